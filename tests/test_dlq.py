"""`python -m service dlq`: the dead letters the real consumer wrote, read, counted, and
re-driven into the real PostgreSQL once the cause is fixed.

The stories: a producer rolls out a new field while unknown fields are refused, and after
`ORDER_UNKNOWN_FIELDS=keep` a re-drive brings every such order back, byte for byte; a batch
PostgreSQL refused comes back once the schema accepts it; a re-drive killed halfway (held on a
row lock the test took, so the kill lands between two chunks it can see) is run again and
stores every order once.
"""

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from service.config import Settings, load_settings
from service.errors import OPERATOR_ERROR_EXIT
from service.ingest.kafka import ensure_topics
from service.model import Order, decode_order, encode_order
from service.recovery.redrive import CHUNK
from service.store.copy_in import CopyBatch
from service.store.writer import OrderWriter
from tests.fix_db import Conn, assert_stored_exactly, scalar, stored_body, stored_count
from tests.fix_kafka import headers, produce, read_all, topic_size
from tests.fix_processes import REPO, Completed, consume_all, run_service, wait_for
from tests.orders import random_orders, with_new_fields

pytestmark = pytest.mark.integration

ROLLED_OUT = 10_000
_REPORT = re.compile(
    r"selected ([\d,]+) dead letters: (?:would store \(dry run, nothing changed\)|stored) "
    r"([\d,]+), already stored ([\d,]+), re-driven before ([\d,]+), still refused ([\d,]+)"
)


def _report(result: Completed) -> tuple[int, ...]:
    """(selected, stored, already stored, re-driven before, still refused) as printed."""
    assert result.returncode == 0, result.stderr
    found = _REPORT.search(result.stdout)
    assert found, result.stdout
    return tuple(int(group.replace(",", "")) for group in found.groups())


def _dlq(env: dict[str, str], *args: str) -> Completed:
    return run_service(env, "dlq", *args, timeout=300)


def _ledger(db: Conn, env: dict[str, str]) -> int:
    return scalar(
        db,
        "SELECT count(*) FROM dead_letter_redrives WHERE original_topic = %s",
        env["KAFKA_TOPIC"],
    )


@pytest.fixture
def env(service_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """A test's own topics (one partition each, so the dead letters are read in the order
    they were written) and group, unknown fields refused."""
    env = {
        **service_env,
        "KAFKA_BROKERS": settings.kafka_brokers,
        "KAFKA_PARTITIONS": "1",
        "ORDER_UNKNOWN_FIELDS": "refuse",
    }
    ensure_topics(load_settings(env))
    return env


def _keep(env: dict[str, str]) -> dict[str, str]:
    return {**env, "ORDER_UNKNOWN_FIELDS": "keep"}


def _roll_out(env: dict[str, str], orders: list[Order]) -> tuple[list[bytes], list[bytes]]:
    """Half the orders as today's producer sends them, then half with new fields, then a few
    messages that no build will take; consumed to the end. The messages of each half."""
    half = len(orders) // 2
    before = [encode_order(o) for o in orders[:half]]
    after = [with_new_fields(o, n) for n, o in enumerate(orders[half:])]
    broken = [b"{not json", b'{"order_uid": 7}']
    produce(env["KAFKA_BROKERS"], env["KAFKA_TOPIC"], before + after + broken)
    consume_all(env)
    return before, after


def test_a_field_rolled_out_while_refused_is_brought_back_by_redrive(
    env: dict[str, str], db: Conn
) -> None:
    orders = random_orders(ROLLED_OUT, seed=9401)
    half = ROLLED_OUT // 2
    _, after = _roll_out(env, orders)
    brokers, dlq = env["KAFKA_BROKERS"], env["KAFKA_DLQ_TOPIC"]
    assert topic_size(brokers, dlq) == half + 2
    assert stored_count(db, [o.order_uid for o in orders]) == half

    stats = _dlq(env, "stats")
    assert stats.returncode == 0, stats.stderr
    assert f"{half + 2:,} dead letters" in stats.stdout
    assert re.search(rf"invalid_order\s+{half + 1:,}", stats.stdout), stats.stdout
    assert re.search(r"malformed_json\s+1\b", stats.stdout), stats.stdout
    assert f"re-driven: 0 (stored 0, already stored 0); not re-driven: {half + 2:,}" in stats.stdout

    # With the old setting nothing passes, and nothing is written.
    assert _report(_dlq(env, "redrive")) == (half + 2, 0, 0, 0, half + 2)
    assert _report(_dlq(_keep(env), "redrive", "--dry-run")) == (half + 2, half, 0, 0, 2)
    assert stored_count(db, [o.order_uid for o in orders]) == half
    assert _ledger(db, env) == 0

    assert _report(_dlq(_keep(env), "redrive", "--kind", "invalid_order")) == (
        half + 1,
        half,
        0,
        0,
        1,
    )
    assert_stored_exactly(db, orders)
    for order, sent in zip(orders[half:], after, strict=True):
        assert stored_body(db, order.order_uid) == sent
    # Still refused: left where they are, not dead-lettered again.
    assert topic_size(brokers, dlq) == half + 2
    # Again: each is known to the ledger, nothing is written twice.
    assert _report(_dlq(_keep(env), "redrive")) == (half + 2, 0, 0, half, 2)
    again = _dlq(env, "stats")
    assert f"re-driven: {half:,} (stored {half:,}, already stored 0)" in again.stdout
    assert _redriven_metrics(env) == {"stored": half, "still_refused": half + 2 + 1 + 2}


def _redriven_metrics(env: dict[str, str]) -> dict[str, float]:
    """`dead_letters_redriven_total` by outcome, as the service's /metrics would sum it."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=env["METRICS_DIR"])  # type: ignore[no-untyped-call]
    return {
        sample.labels["outcome"]: sample.value
        for family in registry.collect()
        if family.name == "dead_letters_redriven"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_a_batch_postgresql_refused_is_stored_once_the_schema_accepts_it(
    env: dict[str, str], db: Conn
) -> None:
    orders = random_orders(400, seed=9402)
    limit = sorted(o.payment.amount for o in orders)[300]
    refused = [o for o in orders if o.payment.amount >= limit]
    db.execute(
        f"ALTER TABLE payments ADD CONSTRAINT dlq_test_amount CHECK (amount < {limit}) NOT VALID"
    )
    try:
        produce(env["KAFKA_BROKERS"], env["KAFKA_TOPIC"], [encode_order(o) for o in orders])
        consume_all(env)
    finally:
        db.execute("ALTER TABLE payments DROP CONSTRAINT dlq_test_amount")
    kinds = {
        headers(m)["error.kind"]
        for m in read_all(env["KAFKA_BROKERS"], env["KAFKA_DLQ_TOPIC"], len(refused))
    }
    assert kinds == {"db_rejected"}
    assert stored_count(db, [o.order_uid for o in orders]) == len(orders) - len(refused)

    shown = _dlq(env, "show", "--kind", "db_rejected", "--limit", "3")
    assert shown.returncode == 0, shown.stderr
    assert f"3 of {len(refused):,} selected dead letters shown" in shown.stdout
    assert "reason: PostgreSQL rejected the data" in shown.stdout
    assert f"from:   {env['KAFKA_TOPIC']}[0]@" in shown.stdout

    assert _report(_dlq(env, "redrive", "--kind", "db_rejected", "--since", "1h")) == (
        len(refused),
        len(refused),
        0,
        0,
        0,
    )
    assert_stored_exactly(db, orders)


@contextmanager
def _held(settings: Settings, raw: bytes) -> Iterator[None]:
    """The order of `raw` inserted in a transaction left open for the block, then rolled
    back: a writer storing the same order_uid waits on it meanwhile."""
    document = decode_order(raw, "keep")
    assert isinstance(document, tuple)
    with (
        psycopg.connect(settings.postgres_conninfo) as conn,
        conn.transaction(force_rollback=True),
    ):
        OrderWriter(conn).write_batch(CopyBatch.of([document]))
        yield


def _waiting_on_a_lock(db: Conn) -> bool:
    return (
        scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event = 'transactionid'",
        )
        > 0
    )


def test_a_redrive_killed_halfway_and_run_again_stores_every_order_once(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    orders = random_orders(ROLLED_OUT, seed=9403)
    half = ROLLED_OUT // 2
    _, after = _roll_out(env, orders)
    # The first letter of the chunk after the halfway one (the topic has one partition).
    halfway = (half // CHUNK // 2 + 1) * CHUNK
    with _held(settings, after[halfway]):
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "dlq", "redrive"], env=_keep(env), cwd=REPO
        )
        try:
            wait_for(lambda: _ledger(db, env) == halfway, what="the chunks before the lock stored")
            wait_for(lambda: _waiting_on_a_lock(db), what="the re-drive held on the lock")
            assert _ledger(db, env) == halfway
            process.send_signal(signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
    assert stored_count(db, [o.order_uid for o in orders]) == half + halfway

    assert _report(_dlq(_keep(env), "redrive")) == (half + 2, half - halfway, 0, halfway, 2)
    assert_stored_exactly(db, orders)
    assert _ledger(db, env) == half


def test_dead_letters_of_one_origin_are_one(
    env: dict[str, str], db: Conn, settings: Settings
) -> None:
    """A batch redelivered after a crash dead-letters its messages again: same origin headers."""
    orders = random_orders(20, seed=9404)
    values = [with_new_fields(o, n) for n, o in enumerate(orders)]
    origin = env["KAFKA_TOPIC"]
    letters: list[list[tuple[str, str | bytes | None]]] = [
        [
            ("error.kind", b"invalid_order"),
            ("error.message", b"unknown field"),
            ("original.topic", origin.encode()),
            ("original.partition", b"0"),
            ("original.offset", str(n).encode()),
        ]
        for n in range(len(values))
    ]
    producer = Producer({"bootstrap.servers": settings.kafka_brokers})
    for _ in range(2):
        for value, letter in zip(values, letters, strict=True):
            producer.produce(env["KAFKA_DLQ_TOPIC"], value, headers=letter)
    assert producer.flush(30) == 0
    stats = _dlq(env, "stats")
    assert "20 dead letters (40 messages; copies of one origin count once)" in stats.stdout
    assert _report(_dlq(_keep(env), "redrive")) == (20, 20, 0, 0, 0)
    assert_stored_exactly(db, orders)


def test_bad_arguments_are_operator_errors(env: dict[str, str]) -> None:
    since = _dlq(env, "show", "--since", "yesterday")
    assert since.returncode == OPERATOR_ERROR_EXIT
    assert "Time 'yesterday' is neither an ISO 8601 time nor a duration" in since.stderr
    missing = _dlq({**env, "KAFKA_DLQ_TOPIC": f"{env['KAFKA_TOPIC']}.nowhere"}, "stats")
    assert missing.returncode == OPERATOR_ERROR_EXIT
    assert "Check 'KAFKA_DLQ_TOPIC'" in missing.stderr
    kind = _dlq(env, "redrive", "--kind", "typo")
    assert kind.returncode == 2
    assert "invalid choice: 'typo'" in kind.stderr
