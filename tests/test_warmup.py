"""The warm-up on the real PostgreSQL: every newest order into the cache with its stored bytes,
read and written chunk by chunk; a failure on either side is raised, and a failed write
abandons the COPY."""

import dataclasses
import errno
import uuid
from collections.abc import Iterator

import pytest

from service.cache import SharedCache
from service.config import Settings
from service.errors import CopyFormatError, ServiceError, StoreUnavailable
from service.run.warmup import CHUNK, warm_cache
from service.store import reader
from tests.fix_db import Conn, scalar, store, stored_body
from tests.fix_processes import cache_region, free_port, wait_for
from tests.orders import random_orders

pytestmark = pytest.mark.integration

# Several chunks and a part of one.
ORDERS = CHUNK * 5 + CHUNK // 3
COPIES = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND position('COPY (' in query) > 0 AND pid <> pg_backend_pid()"
)


@pytest.fixture
def cache() -> Iterator[SharedCache]:
    with cache_region("warmup", 100_000, 256 << 20) as cache:
        yield cache


def test_every_newest_order_is_cached_with_its_stored_bytes_and_the_cache_marked_ready(
    settings: Settings, db: Conn, cache: SharedCache
) -> None:
    orders = random_orders(ORDERS, seed=95)
    store(settings, orders)
    stored = scalar(db, "SELECT count(*) FROM orders")
    loaded = warm_cache(dataclasses.replace(settings, cache_size=stored), cache)
    assert loaded == stored
    assert cache.stats().ready
    for order in orders[:: ORDERS // 50]:
        assert cache.get(order.order_uid) == stored_body(db, order.order_uid)


def test_postgresql_unreachable_raises_store_unavailable_and_leaves_the_cache_not_ready(
    settings: Settings, cache: SharedCache
) -> None:
    nobody = dataclasses.replace(settings, postgres_port=str(free_port()))
    with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
        warm_cache(nobody, cache)
    assert not cache.stats().ready


def test_a_cache_write_that_fails_is_raised_and_abandons_the_copy(
    settings: Settings, db: Conn
) -> None:
    store(settings, random_orders(ORDERS, seed=96))
    stored = scalar(db, "SELECT count(*) FROM orders")
    cache = SharedCache.create(f"warmup-{uuid.uuid4().hex[:8]}", 100_000, 256 << 20)

    def failing_write(_: object) -> int:
        raise OSError(errno.EBADF, "Bad file descriptor")

    cache.put_encoded = failing_write  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(OSError, match="Bad file descriptor"):
            warm_cache(dataclasses.replace(settings, cache_size=stored), cache)
    finally:
        cache.close()
        cache.unlink()
    wait_for(lambda: scalar(db, COPIES) == 0, seconds=10, what="the COPY's backend to end")


def test_a_malformed_copy_stream_is_a_service_error_naming_it_and_leaves_the_cache_not_ready(
    settings: Settings,
    db: Conn,
    cache: SharedCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store(settings, random_orders(10, seed=97))

    def garbage(_: object) -> Iterator[memoryview]:
        yield memoryview(b"PGCOPY?not a binary copy at all")

    monkeypatch.setattr(reader, "copy_messages", garbage)
    with pytest.raises(CopyFormatError, match="COPY from PostgreSQL is malformed") as raised:
        warm_cache(settings, cache)
    assert isinstance(raised.value, ServiceError)
    assert "bad signature" in str(raised.value)
    assert not cache.stats().ready
    wait_for(lambda: scalar(db, COPIES) == 0, seconds=10, what="the COPY's backend to end")
