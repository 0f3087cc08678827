"""What the test modules share: starting the service and the infrastructure, waiting for a
state to be reached, the real broker (producing, reading, sizing topics), and reading back what
was stored. Fixtures live in conftest.py; test data in orders.py; HTTP load in http_load.py."""

import random
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from bench.common import write_orders
from service.cache import SharedCache
from service.config import Settings
from service.model import Delivery, Item, Order, Payment, encode_order
from service.store.db import connect
from service.store.writer import OrderWriter
from tests.http_load import HttpLoad, statuses

Conn = psycopg.Connection[tuple[object, ...]]
# Partitions of the scale tests' topics (test_scale, test_pipeline).
PARTITIONS = 6

REPO = Path(__file__).resolve().parents[1]
Completed = subprocess.CompletedProcess[str]


# --- processes and infrastructure ---------------------------------------------------------


def infra(script: str, *args: str) -> None:
    subprocess.run(["bash", str(REPO / "infra" / script), *args], check=True)


def drop_database(admin: str, name: str, tries: int = 20) -> None:
    """DROP DATABASE … WITH (FORCE), retried for a while: it fails while an autovacuum worker
    (a superuser process, which our role may not terminate) is on the database."""
    for _ in range(tries - 1):
        try:
            _drop(admin, name)
        except psycopg.errors.InsufficientPrivilege:
            time.sleep(0.5)
        else:
            return
    _drop(admin, name)


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until_ready(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} was not ready within {seconds:.0f} s")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['HTTP_PORT']}"


@contextmanager
def cache_region(prefix: str, capacity: int, byte_budget: int) -> Iterator[SharedCache]:
    """A new cache region of this test only, closed and removed afterwards."""
    cache = SharedCache.create(f"{prefix}-{uuid.uuid4().hex[:12]}", capacity, byte_budget)
    try:
        yield cache
    finally:
        cache.close()
        cache.unlink()


@contextmanager
def service_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m service <args>`; stopped with SIGTERM (SIGKILL after 60 s) on leaving."""
    process = subprocess.Popen([sys.executable, "-m", "service", *args], env=env, cwd=REPO)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_service(env: dict[str, str], *args: str, timeout: float = 90) -> Completed:
    """`python -m service <args>` to its end (within `timeout`), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _postgres_answers(settings: Settings) -> bool:
    try:
        with psycopg.connect(settings.postgres_conninfo, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _kafka_answers(settings: Settings) -> bool:
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    try:
        admin.list_topics(timeout=2)
    except KafkaException:
        return False
    return True


def wait_until_up(settings: Settings, seconds: float = 120.0) -> None:
    """Block until PostgreSQL and Kafka both answer again."""
    deadline = time.monotonic() + seconds
    while not (_postgres_answers(settings) and _kafka_answers(settings)):
        if time.monotonic() > deadline:
            raise AssertionError(f"PostgreSQL or Kafka not back within {seconds:.0f} s")
        time.sleep(0.5)


@contextmanager
def outage(settings: Settings, script: str, stop: str, start: str) -> Iterator[float]:
    """Stop one piece of infrastructure (`infra/<script> <stop>`) for the block; yields the
    moment it was down. Started again, and waited for, even when the block fails."""
    infra(script, stop)
    try:
        yield time.monotonic()
    finally:
        infra(script, start)
        wait_until_up(settings)


# --- the broker ---------------------------------------------------------------------------


def produce(
    brokers: str, topic: str, values: Sequence[bytes], keys: Sequence[str | None] | None = None
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "linger.ms": 5,
            "message.max.bytes": 4_000_000,
            # Keeps each partition in the order produced: without it a retried request can
            # land after later ones (seen under load), and tests rely on that order.
            "enable.idempotence": True,
        }
    )
    failures: list[str] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(str(error))

    for index, value in enumerate(values):
        key = keys[index] if keys else None
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures, failures[:3]


def read_all(brokers: str, topic: str, expected: int, seconds: float = 60.0) -> list[Message]:
    """Read `expected` messages from the start of `topic` (fewer if the time runs out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + seconds
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def headers(message: Message) -> dict[str, str]:
    """A message's headers as text (the service sends them as UTF-8 bytes, in a list)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        key: value.decode() if isinstance(value, bytes) else value or "" for key, value in pairs
    }


def wait_for(condition: Callable[[], bool], seconds: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {seconds:.0f} s")


def scalar(conn: psycopg.Connection[tuple[object, ...]], sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(str(row[0]))


def topic_size(brokers: str, topic: str) -> int:
    """How many messages `topic` holds: the sum of its partitions' high watermarks (the test
    topics are never compacted or trimmed, and nothing writes to them transactionally)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"sizer-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


class PacedProducer:
    """Produces `values` (keyed by `keys`) spread evenly over `seconds` from a thread, so a
    fault can be injected while messages keep arriving. Leaving the block waits until every
    message is acknowledged (the producer rides out a broker outage) and raises any failure."""

    def __init__(
        self, brokers: str, topic: str, values: list[bytes], keys: list[str], seconds: float
    ) -> None:
        # log_level 3: errors only; the broker being away is expected, not worth a warning.
        self._producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "log_level": 3})
        self._topic = topic
        self._messages = list(zip(values, keys, strict=True))
        self._seconds = seconds
        self._failures: list[str] = []
        self._error: BaseException | None = None
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PacedProducer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join(self._seconds + 180)
        assert not self._thread.is_alive(), "producer did not finish"
        if self._error is not None:
            raise self._error
        assert not self._failures, self._failures[:3]

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def _run(self) -> None:
        try:
            ticks = max(1, int(self._seconds * 10))
            step = -(-len(self._messages) // ticks)
            started = time.monotonic()
            for tick, start in enumerate(range(0, len(self._messages), step)):
                for value, key in self._messages[start : start + step]:
                    self._producer.produce(self._topic, value, key, on_delivery=self._delivered)
                    self.sent += 1
                self._producer.poll(0)
                time.sleep(max(0.0, started + (tick + 1) * 0.1 - time.monotonic()))
            assert self._producer.flush(170) == 0, "messages not acknowledged"
        except BaseException as exc:  # handed to the test thread in __exit__
            self._error = exc


# --- what was stored ----------------------------------------------------------------------


_items_decoder = msgspec.json.Decoder(list[Item])


_ITEM_FIELDS = Item.__struct_fields__


_ORDER_BY_UID = f"""
SELECT o.order_uid, o.track_number, o.entry,
       d.name, d.phone, d.zip, d.city, d.address, d.region, d.email,
       p.transaction, p.request_id, p.currency, p.provider, p.amount, p.payment_dt, p.bank,
       p.delivery_cost, p.goods_total, p.custom_fee,
       o.locale, o.internal_signature, o.customer_id, o.delivery_service, o.shardkey,
       o.sm_id, o.date_created, o.oof_shard,
       (SELECT json_agg(json_build_object({", ".join(f"'{f}', i.{f}" for f in _ITEM_FIELDS)})
                        ORDER BY i.line_no)::text
          FROM items i WHERE i.order_uid = o.order_uid)
  FROM orders o
  JOIN deliveries d USING (order_uid)
  JOIN payments p USING (order_uid)
 WHERE o.order_uid = %s
"""


def _order_from_row(row: tuple[Any, ...]) -> Order:
    return Order(
        order_uid=row[0],
        track_number=row[1],
        entry=row[2],
        delivery=Delivery(*row[3:10]),
        payment=Payment(*row[10:20]),
        items=_items_decoder.decode(row[28]),
        locale=row[20],
        internal_signature=row[21],
        customer_id=row[22],
        delivery_service=row[23],
        shardkey=row[24],
        sm_id=row[25],
        date_created=row[26],
        oof_shard=row[27],
    )


def stored_order(db: psycopg.Connection[tuple[Any, ...]], uid: str) -> Order | None:
    """The order rebuilt from its normalised rows, or None if it is not stored."""
    row = db.execute(_ORDER_BY_UID, (uid,)).fetchone()
    return None if row is None else _order_from_row(row)


def stored_body(db: psycopg.Connection[tuple[Any, ...]], uid: str) -> bytes | None:
    """The response body stored for the order, or None."""
    row = db.execute("SELECT body FROM order_documents WHERE order_uid = %s", (uid,)).fetchone()
    return None if row is None else bytes(row[0])


def stored_count(db: Conn, uids: list[str]) -> int:
    return scalar(db, "SELECT count(*) FROM orders WHERE order_uid = ANY(%s)", uids)


# --- consumer groups ----------------------------------------------------------------------


def assignment(brokers: str, group: str) -> list[set[int]]:
    """The partitions of each member of `group`, as the group coordinator sees them now."""
    admin = AdminClient({"bootstrap.servers": brokers})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [{tp.partition for tp in m.assignment.topic_partitions} for m in description.members]


def shared_by(brokers: str, group: str, members: int) -> bool:
    """Whether `members` consumers hold every partition between them, each at least one."""
    held = assignment(brokers, group)
    return (
        len(held) == members
        and all(held)
        and sorted(p for partitions in held for p in partitions) == list(range(PARTITIONS))
    )


def unread(brokers: str, group: str, topic: str) -> int:
    """Messages between the group's committed offsets and the end of each partition (all of
    them where it committed none)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(
            consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0)
            for tp in committed
        )
    finally:
        consumer.close()


def consumed(metrics_dir: Path) -> int:
    """Messages read from the topic by the processes that kept their metrics in `metrics_dir`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return int(registry.get_sample_value("orders_consumed_total") or 0)


# --- the API ------------------------------------------------------------------------------


def store(settings: Settings, orders: list[Order]) -> None:
    writer = OrderWriter(connect(settings))
    try:
        write_orders(writer, orders)
    finally:
        writer.close()


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


# --- fault tests: orders, load and the RELIABILITY lines ----------------------------------


def report(fault: str, **counts: object) -> None:
    print(f"\nRELIABILITY {fault}: " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


def items_count(db: Conn, uids: list[str]) -> int:
    return scalar(db, "SELECT count(*) FROM items WHERE order_uid = ANY(%s)", uids)


def assert_stored_exactly(db: Conn, orders: list[Order]) -> None:
    uids = [o.order_uid for o in orders]
    assert stored_count(db, uids) == len(set(uids))
    assert items_count(db, uids) == sum(len(o.items) for o in orders)


def uids_of(orders: list[Order]) -> list[str]:
    return [o.order_uid for o in orders]


def values_of(orders: list[Order]) -> list[bytes]:
    return [encode_order(o) for o in orders]


@dataclass(frozen=True)
class Cached:
    """Paths of orders the cache holds."""

    uids: list[str]

    def __call__(self, rng: random.Random) -> str:
        return f"/order/{rng.choice(self.uids)}"


def unknown(rng: random.Random) -> str:
    """The path of an order nobody stored: a miss."""
    return f"/order/unknown-{rng.getrandbits(64):x}"


def cached_orders(url: str, orders: list[Order]) -> list[str]:
    """Ids of `orders`, each fetched once so it is in the cache whatever the consumer did."""
    for order in orders:
        assert httpx.get(f"{url}/order/{order.order_uid}").status_code == 200
    return uids_of(orders)


def answered_404(load: HttpLoad, since: float) -> int:
    return statuses(load.outcomes(since))[404]


def stored_now(settings: Settings, uids: list[str]) -> int:
    """stored_count on a new connection: PostgreSQL restarts in between."""
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
        return stored_count(db, uids)
