"""Scale-out: consumers of one group share the topic's partitions, hand them over on a
rebalance without losing or redoing anything, and two hosts (network namespaces) keep every
order stored exactly once and answerable from either when one of them dies."""

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaError, TopicPartition

from service.cache.region import remove_files
from service.config import DEFAULT_SESSION_TIMEOUT_MS, Settings, load_settings
from service.ingest.consumer import OrderConsumer
from service.ingest.kafka import ensure_topics
from service.model import Order, encode_order
from tests import netns
from tests.fix_db import Conn, scalar, stored_count
from tests.fix_kafka import PARTITIONS, assignment, produce, shared_by, unread
from tests.fix_load import consumed
from tests.fix_processes import service_process, wait_for, wait_until_ready
from tests.orders import random_orders

pytestmark = pytest.mark.integration

# The consumer's session.timeout.ms: how long a killed member keeps its partitions.
SESSION_TIMEOUT_S = DEFAULT_SESSION_TIMEOUT_MS / 1000


@pytest.fixture
def env(base_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """A fresh topic of six partitions and its own consumer group for each test."""
    topic = f"scale-{uuid.uuid4().hex[:10]}"
    env = {
        **base_env,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_PARTITIONS": str(PARTITIONS),
    }
    ensure_topics(load_settings(env))
    return env


@contextmanager
def streaming(brokers: str, topic: str, orders: list[Order], seconds: float) -> Iterator[None]:
    """Produce `orders` evenly over `seconds` in the background; the block waits for the end."""
    chunks = int(seconds * 4)
    size = -(-len(orders) // chunks)
    errors: list[BaseException] = []

    def run() -> None:
        started = time.monotonic()
        try:
            for index in range(chunks):
                chunk = orders[index * size : (index + 1) * size]
                produce(
                    brokers, topic, [encode_order(o) for o in chunk], [o.order_uid for o in chunk]
                )
                time.sleep(max(0.0, started + (index + 1) * seconds / chunks - time.monotonic()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="producer", daemon=True)
    thread.start()
    yield
    thread.join()
    assert not errors, errors


def assert_exactly_once(db: Conn, orders: list[Order]) -> None:
    uids = [o.order_uid for o in orders]
    assert stored_count(db, uids) == len(orders)
    items = scalar(db, "SELECT count(*) FROM items WHERE order_uid = ANY(%s)", uids)
    assert items == sum(len(o.items) for o in orders)


def test_consumers_of_one_group_split_the_partitions_and_hand_them_over_without_rework(
    env: dict[str, str], settings: Settings, db: Conn, tmp_path: Path
) -> None:
    brokers, group = settings.kafka_brokers, env["KAFKA_GROUP"]
    orders = random_orders(12_000, seed=30)
    uids = [o.order_uid for o in orders]

    def member(name: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return service_process(
            {**env, "INGEST_BATCH_SIZE": "200", "METRICS_DIR": str(tmp_path / name)}, "consume"
        )

    with streaming(brokers, env["KAFKA_TOPIC"], orders, seconds=15), member("a") as first:
        wait_for(lambda: stored_count(db, uids) > 0, what="first consumer storing")
        with member("b"):
            wait_for(lambda: shared_by(brokers, group, 2), what="partitions split between two")
            assert sorted(len(p) for p in assignment(brokers, group)) == [3, 3]
            # A member leaves: it finishes its batch, commits, and the other takes everything.
            first.send_signal(signal.SIGTERM)
            assert first.wait(60) == 0
            wait_for(lambda: shared_by(brokers, group, 1), what="one consumer holding all six")
            with member("c"):
                wait_for(lambda: shared_by(brokers, group, 2), what="partitions split again")
                wait_for(lambda: stored_count(db, uids) == len(orders), what="every order stored")
    assert_exactly_once(db, orders)
    # Offsets were committed for everything stored before each hand-over: no message was
    # read twice, and nothing is left uncommitted.
    assert sum(consumed(tmp_path / name) for name in "abc") == len(orders)
    assert unread(brokers, group, env["KAFKA_TOPIC"]) == 0


class RecordsCommits:
    """Kafka's side of commits: each one recorded with whether the consumer waited for it;
    the test answers the ones it did not wait for."""

    def __init__(self) -> None:
        self.commits: list[tuple[set[tuple[str, int, int]], bool]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self.commits.append(({(tp.topic, tp.partition, tp.offset) for tp in offsets}, asynchronous))
        return offsets


def batch_stored(consumer: OrderConsumer, offsets: dict[tuple[str, int], int]) -> None:
    """What the consumer does with a stored batch's last offsets (no dead letters pending)."""
    consumer._held.hold(consumer._dead_letters.sent, {k: o + 1 for k, o in offsets.items()})
    consumer._release()


def test_a_commit_refused_mid_rebalance_is_made_on_revocation_and_dropped_on_loss(
    settings: Settings,
) -> None:
    consumer = OrderConsumer(settings)
    kafka = RecordsCommits()
    consumer._consumer = kafka  # type: ignore[assignment]
    batch_stored(consumer, {("t", 0): 9, ("t", 1): 4, ("t", 2): 7})
    sent = [TopicPartition("t", p, o) for p, o in ((0, 10), (1, 5), (2, 8))]
    assert kafka.commits == [({("t", 0, 10), ("t", 1, 5), ("t", 2, 8)}, True)]
    consumer._on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), sent)
    # Revoked before any later batch touched partition 0: committed, and waited for, while it
    # is still ours.
    consumer._on_revoke(kafka, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert kafka.commits[-1] == ({("t", 0, 10)}, False)
    # Lost: another member may own it already, so it is never committed from here.
    consumer._on_lost(kafka, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    batch_stored(consumer, {("t", 3): 0})
    assert kafka.commits[-1] == ({("t", 2, 8), ("t", 3, 1)}, True)


def answers(url: str, orders: list[Order]) -> None:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        for order in orders:
            response = client.get(f"/order/{order.order_uid}")
            assert response.status_code == 200, (url, order.order_uid, response.text)
            assert response.content == encode_order(order)


@pytest.mark.slow
def test_two_hosts_share_the_partitions_and_the_survivor_takes_over_when_one_is_killed(
    env: dict[str, str], settings: Settings, db: Conn, tmp_path: Path
) -> None:
    # Never skipped: CI runs as root with iproute2 (infra/test-deps.sh installs it).
    assert (reason := netns.unavailable()) is None, reason
    brokers, group = settings.kafka_brokers, env["KAFKA_GROUP"]
    orders = random_orders(15_000, seed=31)
    by_uid = {o.order_uid: o for o in orders}
    uids = list(by_uid)
    kafka_port = int(brokers.rsplit(":", 1)[1])

    def stored_sample(count: int) -> list[Order]:
        rows = db.execute(
            "SELECT order_uid FROM orders WHERE order_uid = ANY(%s) ORDER BY random() LIMIT %s",
            (uids, count),
        ).fetchall()
        return [by_uid[str(uid)] for (uid,) in rows]

    caches: list[str] = []
    try:
        with netns.hosts(2, [kafka_port, int(settings.postgres_port)]) as hosts:
            urls = []
            for host in hosts:
                caches.append(f"{env['CACHE_NAME']}-{host.name}")
                host.start(
                    [sys.executable, "-m", "service", "run"],
                    {
                        **env,
                        "HTTP_HOST": host.address,
                        "HTTP_WORKERS": "1",
                        "CACHE_NAME": caches[-1],
                        "METRICS_DIR": str(tmp_path / host.name),
                    },
                )
                urls.append(f"http://{host.address}:{settings.http_port}")
            for url in urls:
                wait_until_ready(url)
            killed, survivor = hosts
            with streaming(brokers, env["KAFKA_TOPIC"], orders, seconds=30):
                wait_for(lambda: shared_by(brokers, group, 2), what="partitions split by hosts")
                wait_for(lambda: stored_count(db, uids) > 2_000, what="both hosts storing")
                for url in urls:
                    answers(url, stored_sample(100))
                killed.kill()
                wait_for(
                    lambda: shared_by(brokers, group, 1),
                    seconds=SESSION_TIMEOUT_S + 30,
                    what="the survivor holding all six partitions",
                )
            wait_for(lambda: stored_count(db, uids) == len(orders), what="every order stored")
            assert_exactly_once(db, orders)
            answers(urls[1], random.Random(1).sample(orders, 300))
            assert survivor.pids(), "the survivor is still running"
    finally:
        for name in caches:
            remove_files(name)
