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
from collections.abc import Iterator
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
    """A fresh database, a topic holding `orders`, and the environment pointing at both."""

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


def preloaded(count: int, batch_size: int = BATCH_SIZE, database: str = DATABASE) -> Preloaded:
    """`count` random orders in a new topic, and a fresh database for the consumer."""
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
    items = sum(len(o.items) for o in orders)
    log(f"preloading {count:,} orders ({items:,} items) into {settings.kafka_topic}")
    preload(settings, orders)
    return Preloaded(settings, {**base, "POSTGRES_DB": settings.postgres_db}, orders)


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


def wait_stored(
    conn: psycopg.Connection[tuple[object, ...]], process: subprocess.Popen[bytes], at_least: int
) -> int:
    """Poll until at least `at_least` orders are stored; return the count seen."""
    while (stored := count_orders(conn)) < at_least:
        if process.poll() is not None:
            raise RuntimeError(f"consumer exited with {process.returncode}")
        time.sleep(0.05)
    return stored
