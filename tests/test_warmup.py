"""The warm-up on the real PostgreSQL: every newest order into the cache with its stored bytes,
read and written in overlapping threads; a failure on either side is raised, not hung on."""

import dataclasses
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from service.cache import SharedCache
from service.config import Settings
from service.errors import StoreUnavailable
from service.warmup import CHUNK, READ_AHEAD, warm_cache
from tests.helpers import free_port, scalar, store, stored_body
from tests.orders import random_orders

pytestmark = pytest.mark.integration

# More than the reader may run ahead, so it has to wait for the writer at least once.
ORDERS = CHUNK * (READ_AHEAD + 2)


@pytest.fixture
def cache() -> Iterator[SharedCache]:
    cache = SharedCache.create(f"warmup-{uuid.uuid4().hex[:8]}", 100_000, 256 << 20)
    yield cache
    cache.close()
    cache.unlink()


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "warm-up reader"]


def test_every_newest_order_is_cached_with_its_stored_bytes_and_the_cache_marked_ready(
    settings: Settings, db: psycopg.Connection[tuple[object, ...]], cache: SharedCache
) -> None:
    orders = random_orders(ORDERS, seed=95)
    store(settings, orders)
    stored = scalar(db, "SELECT count(*) FROM orders")
    loaded = warm_cache(dataclasses.replace(settings, cache_size=stored), cache)
    assert loaded == stored
    assert cache.stats().ready
    for order in orders[:: ORDERS // 50]:
        assert cache.get(order.order_uid) == stored_body(db, order.order_uid)
    assert not reader_threads()


def test_postgresql_unreachable_raises_store_unavailable_and_leaves_the_cache_not_ready(
    settings: Settings, cache: SharedCache
) -> None:
    nobody = dataclasses.replace(settings, postgres_port=free_port())
    with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
        warm_cache(nobody, cache)
    assert not cache.stats().ready
    assert not reader_threads()


def test_a_cache_write_that_fails_stops_the_reader_and_is_raised(
    settings: Settings, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    store(settings, random_orders(ORDERS, seed=96))
    stored = scalar(db, "SELECT count(*) FROM orders")
    closed = SharedCache.create(f"warmup-{uuid.uuid4().hex[:8]}", 100_000, 256 << 20)
    closed.close()
    try:
        with pytest.raises(OSError, match="Bad file descriptor"):
            warm_cache(dataclasses.replace(settings, cache_size=stored), closed)
    finally:
        closed.unlink()
    assert not reader_threads()
