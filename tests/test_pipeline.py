"""The consumer's pipeline under faults: the consumer SIGKILLed with a batch held in each stage
(decoded, in the database, stored but waiting for its dead letters), and a rebalance while the
pipeline is full. Each stage is held by a real server, so the test chooses the moment:

- in the database: the test holds a SHARE lock on `orders`, and the consumer's COPY waits for
  it (visible in pg_stat_activity as a lock wait);
- decoded: the next batch carries an invalid message, whose dead letter reaches the topic as
  soon as the batch is decoded;
- stored, dead letters unacknowledged: the dead-letter topic takes messages of at most 100
  bytes, so the broker refuses every dead letter (and the consumer resends it) until the test
  raises the limit.
"""

import json
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from service.config import Settings, load_settings
from service.ingest.kafka import ensure_topics
from service.model import Order, encode_order
from tests.fix_db import Conn, scalar
from tests.fix_kafka import assignment, produce, read_all, topic_size, unread
from tests.fix_load import consumed
from tests.fix_processes import service_process, wait_for
from tests.orders import random_orders, reference_dict

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
def env(base_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """A fresh topic and consumer group for each test."""
    topic = f"pipeline-{uuid.uuid4().hex[:10]}"
    return {
        **base_env,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_PARTITIONS": str(PARTITIONS),
    }


def invalid(marker: str) -> bytes:
    return json.dumps(reference_dict(order_uid=marker, items=[])).encode()


def send(brokers: str, topic: str, orders: list[Order], *extra: bytes) -> None:
    values = [encode_order(o) for o in orders] + list(extra)
    keys: list[str | None] = [o.order_uid for o in orders] + [None] * len(extra)
    produce(brokers, topic, values, keys)


def stored(db: Conn, orders: list[Order]) -> int:
    uids = [o.order_uid for o in orders]
    return scalar(db, "SELECT count(*) FROM orders WHERE order_uid = ANY(%s)", uids)


def assert_exactly_once(db: Conn, orders: list[Order]) -> None:
    uids = [o.order_uid for o in orders]
    assert stored(db, orders) == len(orders)
    items = scalar(db, "SELECT count(*) FROM items WHERE order_uid = ANY(%s)", uids)
    assert items == sum(len(o.items) for o in orders)


def lock_waits(db: Conn) -> int:
    return scalar(
        db,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )


@contextmanager
def orders_locked(settings: Settings) -> Iterator[None]:
    """Writers of `orders` wait until the block ends; readers go on."""
    with psycopg.connect(settings.postgres_conninfo) as conn:
        conn.execute("LOCK TABLE orders IN SHARE MODE")
        yield
        conn.rollback()


def test_killed_with_one_batch_in_the_database_and_the_next_decoded_it_loses_nothing(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    brokers, topic, dlq = settings.kafka_brokers, env["KAFKA_TOPIC"], env["KAFKA_DLQ_TOPIC"]
    # Seeds 150-155 are this module's: the run's database is shared by every test, and another
    # test's seed would make these orders stored already.
    first, second = random_orders(200, seed=150), random_orders(200, seed=151)
    ensure_topics(load_settings(env))
    with orders_locked(settings), service_process(env, "consume") as process:
        send(brokers, topic, first)
        wait_for(lambda: lock_waits(db) > 0, what="the first batch waiting in the database")
        send(brokers, topic, second, invalid("pipeline-bad"))
        wait_for(lambda: topic_size(brokers, dlq) >= 1, what="the next batch decoded")
        assert lock_waits(db) > 0, "the first batch left the database stage"
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert stored(db, first + second) == 0
    assert unread(brokers, env["KAFKA_GROUP"], topic) == len(first) + len(second) + 1
    with service_process(env, "consume"):
        wait_for(lambda: stored(db, first + second) == 400, what="every order stored")
        wait_for(lambda: unread(brokers, env["KAFKA_GROUP"], topic) == 0, what="commit")
    assert_exactly_once(db, first + second)
    dead = read_all(brokers, dlq, topic_size(brokers, dlq))
    assert {m.value() for m in dead} == {invalid("pipeline-bad")}


def set_max_message_bytes(brokers: str, topic: str, value: int) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes",
                str(value),
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=10)


def test_killed_with_a_stored_batch_waiting_for_its_dead_letters_it_commits_nothing_early(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    brokers, topic, dlq = settings.kafka_brokers, env["KAFKA_TOPIC"], env["KAFKA_DLQ_TOPIC"]
    admin = AdminClient({"bootstrap.servers": brokers})
    new = NewTopic(dlq, PARTITIONS, 1, config={"max.message.bytes": "100"})
    admin.create_topics([new])[dlq].result(timeout=10)
    ensure_topics(load_settings(env))
    orders = random_orders(300, seed=152)
    with service_process(env, "consume") as process:
        send(brokers, topic, orders, invalid("pipeline-unacked"))
        wait_for(lambda: stored(db, orders) == len(orders), what="the batch stored")
        # Stored, but its dead letter is unacknowledged: no offset may have moved.
        assert unread(brokers, env["KAFKA_GROUP"], topic) == len(orders) + 1
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert topic_size(brokers, dlq) == 0
    set_max_message_bytes(brokers, dlq, 4_194_304)
    with service_process(env, "consume"):
        wait_for(lambda: unread(brokers, env["KAFKA_GROUP"], topic) == 0, what="commit")
    assert_exactly_once(db, orders)
    dead = read_all(brokers, dlq, topic_size(brokers, dlq))
    assert {m.value() for m in dead} == {invalid("pipeline-unacked")}


def test_a_rebalance_with_the_pipeline_full_drains_it_before_handing_partitions_over(
    env: dict[str, str], settings: Settings, db: Conn, tmp_path: Path
) -> None:
    brokers, topic, group = settings.kafka_brokers, env["KAFKA_TOPIC"], env["KAFKA_GROUP"]
    first, second, third = (random_orders(200, seed=s) for s in (153, 154, 155))
    ensure_topics(load_settings(env))

    def member(name: str) -> dict[str, str]:
        return {**env, "METRICS_DIR": str(tmp_path / name)}

    with (
        service_process(member("a"), "consume"),
        psycopg.connect(settings.postgres_conninfo) as lock,
    ):
        lock.execute("LOCK TABLE orders IN SHARE MODE")
        send(brokers, topic, first)
        wait_for(lambda: lock_waits(db) > 0, what="the first batch waiting in the database")
        send(brokers, topic, second, invalid("pipeline-rebalance"))
        wait_for(lambda: topic_size(brokers, env["KAFKA_DLQ_TOPIC"]) >= 1, what="decoded")
        with service_process(member("b"), "consume"):
            wait_for(lambda: len(assignment(brokers, group)) == 2, what="b joining the group")
            # a cannot give partitions up before its pipeline is stored and committed.
            assert sum(1 for held in assignment(brokers, group) if held) == 1
            assert lock_waits(db) > 0
            lock.rollback()
            wait_for(lambda: all(assignment(brokers, group)), what="partitions shared")
            send(brokers, topic, third)
            wait_for(lambda: stored(db, first + second + third) == 600, what="all stored")
            wait_for(lambda: unread(brokers, group, topic) == 0, what="all committed")
    assert_exactly_once(db, first + second + third)
    # Everything a held before the hand-over was committed by it: no message was read twice.
    assert consumed(tmp_path / "a") + consumed(tmp_path / "b") == 601
