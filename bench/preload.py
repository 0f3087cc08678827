"""A topic preloaded with random orders, a fresh database, and the real consumer process
draining one into the other: the set-up of the ingest and scaling benchmarks, the sweeps and the
consumer profile. It uses only the service's stable surface (the order model, the demo
producer's orders, Kafka settings, `python -m service consume`), so bench.profile also runs in
a worktree of an older commit.
"""

import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import psycopg
from confluent_kafka import Producer

from bench import processes
from bench.common import fresh_database, log
from service.cache import SharedCache
from service.config import Settings
from service.ingest.kafka import ensure_topics, producer_config
from service.model import Order, encode_order
from service.produce import random_order

BATCH_SIZE = 5000
DATABASE = "orders_bench"


@dataclass(frozen=True, slots=True)
class Preloaded:
    """A fresh database, `orders` (in the topic once preloaded), and the environment pointing
    at both."""

    settings: Settings
    env: dict[str, str]
    orders: list[Order]


def preload(settings: Settings, orders: list[Order]) -> None:
    ensure_topics(settings)
    producer = Producer({**producer_config(settings), "linger.ms": 50, "batch.size": 1_000_000})
    for order in orders:
        while True:
            try:
                producer.produce(settings.kafka_topic, encode_order(order), order.order_uid)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush()


def count_orders(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT count(*) FROM orders").fetchone()
    return int(str(row[0])) if row else 0


def generated(count: int, batch_size: int = BATCH_SIZE, database: str = DATABASE) -> Preloaded:
    """`count` random orders, not sent yet, and a fresh database for the consumer."""
    run = uuid.uuid4().hex[:8]
    base = {
        **os.environ,
        "KAFKA_TOPIC": f"bench-{run}",
        "KAFKA_GROUP": f"bench-{run}",
        "CACHE_NAME": f"bench-{run}",
        "INGEST_BATCH_SIZE": str(batch_size),
        "LOG_LEVEL": "WARNING",
    }
    settings = fresh_database(base, database)
    rng = random.Random(7)
    orders = [random_order(rng) for _ in range(count)]
    return Preloaded(settings, {**base, "POSTGRES_DB": settings.postgres_db}, orders)


def preloaded(count: int, batch_size: int = BATCH_SIZE, database: str = DATABASE) -> Preloaded:
    """`count` random orders in a new topic, and a fresh database for the consumer."""
    data = generated(count, batch_size, database)
    items = sum(len(o.items) for o in data.orders)
    log(f"preloading {count:,} orders ({items:,} items) into {data.settings.kafka_topic}")
    preload(data.settings, data.orders)
    return data


@contextmanager
def cache_region(settings: Settings) -> Iterator[SharedCache]:
    """The shared cache region the consumers fill, created as `python -m service run` creates
    it (CACHE_SIZE, CACHE_BYTES), so that the figure includes the work of filling it."""
    cache = SharedCache.create(settings.cache_name, settings.cache_size, settings.cache_bytes)
    try:
        yield cache
    finally:
        cache.close()
        cache.unlink()


def consumer(env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The real consumer process (`python -m service consume`) for the duration of the block."""
    return processes.started([*processes.SERVICE, "consume"], env)


# Each count(*) scans the whole table, PostgreSQL CPU taken from the consumer being measured:
# counting every 50 ms took 0.6 s of a 6.5 s drain of 200,000 orders. So the next count comes
# after half the time the last rate says is left, within these bounds.
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0


def check_alive(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"consumer exited with {process.returncode}")


def wait_stored(
    conn: psycopg.Connection[tuple[object, ...]],
    processes: Sequence[subprocess.Popen[bytes]],
    at_least: int,
) -> int:
    """Poll until at least `at_least` orders are stored; return the count seen."""
    delay = POLL_MIN_S
    counted_at, stored = time.perf_counter(), count_orders(conn)
    while stored < at_least:
        check_alive(processes)
        time.sleep(delay)
        previous_at, previous = counted_at, stored
        counted_at, stored = time.perf_counter(), count_orders(conn)
        rate = (stored - previous) / (counted_at - previous_at)
        left_s = (at_least - stored) / rate if rate > 0 else 0.0
        delay = min(max(left_s / 2, POLL_MIN_S), POLL_MAX_S)
    return stored
