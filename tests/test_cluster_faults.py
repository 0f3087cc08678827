"""Faults of a replicated Kafka cluster (three KRaft brokers, replication 3, min ISR 2) under
mixed valid, duplicate and invalid messages with cache hits requested beside them: the broker
leading most of the order topic's partitions SIGKILLed, then the consumer group's coordinator.
Each test prints a `RELIABILITY` line (run with -s); docs/reliability.md is filled from them.
The broker stays down for CLUSTER_FAULT_DOWN_S (default 20 s, shorter than the 60 s of the
issue so the suite fits 2 cores)."""

import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec
import psycopg
import pytest

from service.config import Settings, load_settings
from service.ingest.kafka import ensure_topics
from service.model import Order, encode_order
from tests.fix_cluster import Cluster
from tests.fix_db import Conn, assert_stored_exactly, scalar, store, stored_body, stored_count
from tests.fix_kafka import PacedProducer, read_all, topic_size
from tests.fix_load import Cached, cached_orders, consumed, report, uids_of
from tests.fix_processes import service_process, service_url, wait_for, wait_until_ready
from tests.http_load import HttpLoad, statuses
from tests.orders import random_orders

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOWN_S = float(os.environ.get("CLUSTER_FAULT_DOWN_S", "20"))
VALID = 24_000
DUPLICATES = 600
INVALID = 400
RATE = 1_000  # messages a second


@dataclass(frozen=True)
class Mixed:
    valid: list[Order]
    duplicates: list[Order]
    invalid: list[bytes]
    values: list[bytes]
    keys: list[str]


def mixed(seed: int) -> Mixed:
    """Valid orders, later copies of some with other content, invalid messages: shuffled so
    that each copy comes after its original."""
    rng = random.Random(seed)
    valid = random_orders(VALID, seed=seed)
    picked = rng.sample(range(VALID), DUPLICATES)
    duplicates = [msgspec.structs.replace(valid[i], customer_id="second-copy") for i in picked]
    invalid = [f'{{"order_uid": "broken-{seed}-{i}", '.encode() for i in range(INVALID)]
    placed = [(float(i), encode_order(o), o.order_uid) for i, o in enumerate(valid)]
    placed += [
        (rng.uniform(i, VALID), encode_order(d), d.order_uid)
        for i, d in zip(picked, duplicates, strict=True)
    ]
    placed += [(rng.uniform(0, VALID), raw, f"broken-{i}") for i, raw in enumerate(invalid)]
    placed.sort(key=lambda entry: entry[0])
    return Mixed(valid, duplicates, invalid, [v for _, v, _ in placed], [k for _, _, k in placed])


class StoringPauses:
    """Samples how many orders PostgreSQL holds every 0.1 s from a thread until `done` says
    the stream is stored; `longest` is the longest time the count stood still after the fault
    (measured from the fault when it was standing still then)."""

    def __init__(self, settings: Settings, done: Callable[[int], bool]) -> None:
        self._settings, self._done = settings, done
        self._stop = threading.Event()
        self._changes: list[float] = []
        self.fault_at = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "StoringPauses":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def longest(self) -> float:
        gaps = [
            later - max(earlier, self.fault_at)
            for earlier, later in zip(self._changes, self._changes[1:], strict=False)
            if later > self.fault_at
        ]
        return max(gaps, default=0.0)

    def _run(self) -> None:
        with psycopg.connect(self._settings.postgres_conninfo, autocommit=True) as db:
            last = -1
            while not self._stop.wait(0.1):
                count = scalar(db, "SELECT count(*) FROM orders")
                if count != last:
                    self._changes.append(time.monotonic())
                    last = count
                if self._done(count):
                    return


class ServiceLog:
    """What the service wrote, once it has stopped."""

    text = ""


@contextmanager
def echoed(log: ServiceLog) -> Iterator[IO[bytes]]:
    """A file for the service's output, kept in `log` and echoed to the test's output when
    the block ends (so -s shows it as before)."""
    with tempfile.TemporaryFile() as output:
        try:
            yield output
        finally:
            output.seek(0)
            log.text = output.read().decode(errors="replace")
            sys.stdout.write(log.text)
            sys.stdout.flush()


# The consumer's lines worth seeing beside an order stored from the wrong copy: the group's
# moves, every commit or dead letter Kafka did not take at once, and librdkafka's warnings
# other than a connection to the dead broker failing.
_GROUP_EVENTS = re.compile(
    r"service\.ingest\S*\[\d+\] (assigned|revoked|lost|offset commit|gave up)"
    r"|dead letter not delivered|(WARNING|ERROR) librdkafka\S* (?!FAIL )"
)


def overwrite_evidence(
    brokers: str,
    topic: str,
    stream: Mixed,
    overwritten: list[str],
    dlq: list[bytes | None],
    log: str,
) -> str:
    """Where each overwritten order's copies are in the topic (partition@offset, first copy
    marked 1, the later one 2), whether its first copy was dead-lettered, and the consumer's
    group events: enough to tell a topic out of order from a consumer that skipped."""
    wanted = set(overwritten)
    first = {o.order_uid: encode_order(o) for o in stream.valid if o.order_uid in wanted}
    placed: dict[str, list[str]] = {uid: [] for uid in overwritten}
    for message in read_all(brokers, topic, topic_size(brokers, topic)):
        uid = (message.key() or b"").decode()
        if uid in wanted:
            copy = 1 if message.value() == first[uid] else 2
            placed[uid].append(f"{copy}:{message.partition()}@{message.offset()}")
    dead = set(dlq)
    lines = [
        f"{uid}: {' '.join(placed[uid])}{' first copy in DLQ' if first[uid] in dead else ''}"
        for uid in overwritten[:8]
    ]
    events = [line for line in log.splitlines() if _GROUP_EVENTS.search(line)]
    return "\n".join([*lines, "consumer:", *events[:20]])


def cluster_env(service_env: dict[str, str], cluster: Cluster) -> dict[str, str]:
    return {
        **service_env,
        "KAFKA_BROKERS": cluster.brokers,
        "KAFKA_PARTITIONS": "6",
        "KAFKA_REPLICATION": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        # Outlasts the coordinator's move (docs/deploying.md, a three-broker cluster).
        "KAFKA_SESSION_TIMEOUT_MS": "30000",
        "INGEST_BATCH_SIZE": "500",
    }


def run_with_fault(
    name: str,
    service_env: dict[str, str],
    settings: Settings,
    db: Conn,
    cluster: Cluster,
    victim: Callable[[dict[str, str]], int],
    seed: int,
) -> None:
    """Stream the mixed messages through `run`, SIGKILL the broker `victim` names once a
    quarter is stored, restart it DOWN_S later, and check and report the outcome. The stream
    is `seed`'s orders and the cached ones `seed + 1`'s: both seeds no other test uses."""
    cluster.up()
    env = cluster_env(service_env, cluster)
    ensure_topics(load_settings(env))
    stream = mixed(seed)
    uids = uids_of(stream.valid)
    # An order stored before the stream (another test's, from the same seed: random_orders
    # gives the same ids, with another date_created) would make its first copy a duplicate.
    assert stored_count(db, uids) == 0, "the stream's orders are stored already: reuse of a seed"
    url = service_url(env)
    cached = random_orders(100, seed=seed + 1)
    store(settings, cached)
    baseline = scalar(db, "SELECT count(*) FROM orders")
    log = ServiceLog()
    with echoed(log) as output, service_process(env, "run", output=output) as service:
        wait_until_ready(url)
        hits = Cached(cached_orders(url, cached))
        with (
            StoringPauses(settings, lambda n: n >= baseline + VALID) as pauses,
            HttpLoad(url, hits, threads=2) as hit_load,
            PacedProducer(
                cluster.brokers,
                env["KAFKA_TOPIC"],
                stream.values,
                stream.keys,
                seconds=len(stream.values) / RATE,
            ),
        ):
            wait_for(lambda: stored_count(db, uids) > VALID // 4, 120, "ingest under way")
            node = victim(env)
            stored_at_fault = stored_count(db, uids)
            pauses.fault_at = cluster.kill(node)
            try:
                time.sleep(DOWN_S)
            finally:
                cluster.start(node)
            wait_for(lambda: stored_count(db, uids) == VALID, 240, "every valid order stored")
            wait_for(
                lambda: topic_size(cluster.brokers, env["KAFKA_DLQ_TOPIC"]) >= INVALID, 120, "DLQ"
            )
        assert service.poll() is None, "the service died"
    assert_stored_exactly(db, stream.valid)
    first = {o.order_uid: encode_order(o) for o in stream.valid}
    overwritten = [
        d.order_uid for d in stream.duplicates if stored_body(db, d.order_uid) != first[d.order_uid]
    ]
    dlq = env["KAFKA_DLQ_TOPIC"]
    dead = [m.value() for m in read_all(cluster.brokers, dlq, topic_size(cluster.brokers, dlq))]
    assert not overwritten, "a later copy overwrote the first:\n" + overwrite_evidence(
        cluster.brokers, env["KAFKA_TOPIC"], stream, overwritten, dead, log.text
    )
    assert set(dead) == set(stream.invalid), "the DLQ holds exactly the invalid ones"
    hit_statuses = statuses(hit_load.outcomes())
    assert hit_statuses == {200: hit_load.count()}, hit_statuses
    redelivered = consumed(Path(env["METRICS_DIR"])) - len(stream.values)
    report(
        name,
        node=node,
        down_s=DOWN_S,
        messages=len(stream.values),
        valid=VALID,
        duplicates=DUPLICATES,
        invalid=INVALID,
        stored_at_fault=stored_at_fault,
        stored=stored_count(db, uids),
        overwritten=len(overwritten),
        dead_letters=len(set(dead)),
        dead_letters_twice=len(dead) - len(set(dead)),
        redelivered=redelivered,
        requests=hit_load.count(),
        failed_requests=hit_load.count() - hit_statuses[200],
        longest_storing_pause_s=round(pauses.longest, 1),
    )


def test_the_broker_leading_most_partitions_sigkilled_loses_nothing(
    service_env: dict[str, str], settings: Settings, db: Conn, kafka_cluster: Cluster
) -> None:
    def leader(env: dict[str, str]) -> int:
        """The node leading most partitions, other than the coordinator (fault 2's)."""
        coordinator = kafka_cluster.coordinator(env["KAFKA_GROUP"])
        leaders = kafka_cluster.leaders(env["KAFKA_TOPIC"]).most_common()
        return next(node for node, _ in leaders if node != coordinator)

    run_with_fault("cluster_leader_kill", service_env, settings, db, kafka_cluster, leader, 9601)


def test_the_group_coordinator_sigkilled_loses_nothing(
    service_env: dict[str, str], settings: Settings, db: Conn, kafka_cluster: Cluster
) -> None:
    def coordinator(env: dict[str, str]) -> int:
        return kafka_cluster.coordinator(env["KAFKA_GROUP"])

    run_with_fault(
        "cluster_coordinator_kill", service_env, settings, db, kafka_cluster, coordinator, 9611
    )
