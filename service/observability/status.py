"""What the live status page (`/status`) shows, as one JSON document (`/status.json`): the
consumer's state, Kafka as the consumer last saw it, PostgreSQL as this process sees it now,
orders, dead letters, the cache and requests. The same counters Prometheus scrapes; the page
turns them into rates and charts of the last minutes itself.

Answered whatever is down: every figure comes from shared memory and the metrics files, and
PostgreSQL's state is the outcome of a check the caller made (with a deadline).
"""

import time
from collections import defaultdict

import msgspec

from service.cache import SharedCache
from service.config import Settings
from service.errors import STORE_CANNOT_ANSWER
from service.observability import metrics
from service.run import consumer_state
from service.run.consumer_state import ConsumerState
from service.store.db import Pool, connect, translated_errors
from service.store.reader import PING, ping


class Postgres(msgspec.Struct):
    up: bool
    detail: str


class Kafka(msgspec.Struct):
    """From the consumer's last librdkafka statistics."""

    brokers_up: int
    brokers: int


class Cache(msgspec.Struct):
    entries: int
    capacity: int
    bytes: int
    evictions: int
    hits: int
    misses: int


class Orders(msgspec.Struct):
    consumed: int
    stored: int
    duplicate: int
    lag: int


class Status(msgspec.Struct):
    at: float
    consumer: ConsumerState | None
    postgres: Postgres
    kafka: Kafka | None
    orders: Orders
    dead_letters: dict[str, int]
    cache: Cache
    requests: dict[str, int]


_encoder = msgspec.json.Encoder()
ANSWERING = Postgres(up=True, detail="answering")


async def postgres_through(pool: Pool) -> Postgres:
    """PostgreSQL as an API worker sees it: a read through its pool, within the read deadline."""
    try:
        await ping(pool)
    except STORE_CANNOT_ANSWER as exc:
        return Postgres(up=False, detail=str(exc))
    return ANSWERING


def postgres_now(settings: Settings) -> Postgres:
    """PostgreSQL as a process without a pool sees it: a connection of its own, one read."""
    try:
        with translated_errors(), connect(settings) as conn:
            conn.execute(PING)
    except STORE_CANNOT_ANSWER as exc:
        return Postgres(up=False, detail=str(exc))
    return ANSWERING


def status(cache: SharedCache, postgres: Postgres) -> bytes:
    """The status document now, with `postgres` as the caller found it."""
    totals: dict[str, float] = defaultdict(float)
    dead_letters: dict[str, int] = {}
    requests: dict[str, int] = {}
    for name, labels, value in metrics.samples():
        if name == "dead_letters_total":
            dead_letters[labels["kind"]] = int(value)
        elif name == "http_requests_total":
            requests[labels["status"]] = int(value)
        else:
            totals[name] += value
    stats = cache.stats()
    known = int(totals["kafka_brokers"])
    return _encoder.encode(
        Status(
            at=time.time(),
            consumer=consumer_state.read(),
            postgres=postgres,
            kafka=Kafka(int(totals["kafka_brokers_up"]), known) if known else None,
            orders=Orders(
                consumed=int(totals["orders_consumed_total"]),
                stored=int(totals["orders_stored_total"]),
                duplicate=int(totals["orders_duplicate_total"]),
                lag=int(totals["consumer_lag"]),
            ),
            dead_letters=dead_letters,
            cache=Cache(
                entries=stats.entries,
                capacity=stats.capacity,
                bytes=stats.bytes_used,
                evictions=stats.evictions,
                hits=int(totals["cache_hits_total"]),
                misses=int(totals["cache_misses_total"]),
            ),
            requests=requests,
        )
    )
