"""Unit tests of `lookup.stored_order` when PostgreSQL cannot answer: the cache is asked once
more before the answer is 503."""

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import pytest

from service.api.lookup import stored_order
from service.api.state import AppState
from service.cache import SharedCache
from service.errors import StoreUnavailable
from tests.fix_processes import cache_region


class DownLoader:
    """A DocumentLoader while PostgreSQL is down; `meanwhile` runs before it fails."""

    def __init__(self, meanwhile: Any = None) -> None:
        self.meanwhile = meanwhile

    async def load(self, order_uid: str) -> bytes | None:
        if self.meanwhile is not None:
            self.meanwhile()
        raise StoreUnavailable("PostgreSQL is not answering; is it running?")


@pytest.fixture
def region() -> Iterator[SharedCache]:
    with cache_region("test-lookup", 10, 1 << 16) as cache:
        yield cache


def state_of(cache: SharedCache, loader: DownLoader) -> AppState:
    return AppState(
        settings=cast(Any, None), cache=cache, pool=cast(Any, None), documents=cast(Any, loader)
    )


def test_an_order_cached_while_postgresql_failed_is_answered_from_the_cache(
    region: SharedCache,
) -> None:
    loader = DownLoader(meanwhile=lambda: region.put("order-1", b'{"order_uid":"order-1"}'))
    answer = asyncio.run(stored_order(state_of(region, loader), "order-1"))
    assert (answer.status, answer.body) == (200, b'{"order_uid":"order-1"}')


def test_an_order_in_neither_place_is_503_with_the_reason(region: SharedCache) -> None:
    answer = asyncio.run(stored_order(state_of(region, DownLoader()), "order-2"))
    assert answer.status == 503
    assert b"is it running?" in answer.body
