"""DocumentLoader against the real PostgreSQL: concurrent misses share queries, every caller
gets its own order's body, and failures and cancellations reach exactly the callers they
concern. The spy on `fetch_documents` only records each query's ids; the query still runs."""

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from bench.common import create_database, drop_database
from service.config import Settings
from service.errors import StoreUnavailable
from service.model import encode_order
from service.store import loader
from service.store.db import Pool, async_pool
from service.store.loader import DocumentLoader
from service.store.reader import fetch_documents
from tests.fix_db import store
from tests.fix_processes import free_port
from tests.orders import random_orders

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stored_bodies(settings: Settings) -> dict[str, bytes]:
    orders = random_orders(40, seed=71)
    store(settings, orders)
    return {order.order_uid: encode_order(order) for order in orders}


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ids of each query the loader sends, in order."""
    sent: list[list[str]] = []

    async def recording(pool: Pool, order_uids: list[str]) -> dict[str, bytes]:
        sent.append(order_uids)
        return await fetch_documents(pool, order_uids)

    monkeypatch.setattr(loader, "fetch_documents", recording)
    return sent


async def load_all(settings: Settings, uids: list[str], max_reads: int) -> list[bytes | None]:
    async with async_pool(settings) as pool:
        documents = DocumentLoader(pool, max_reads)
        return await asyncio.gather(*(documents.load(uid) for uid in uids))


def test_misses_waiting_for_a_query_leave_together_and_once_per_id(
    settings: Settings, stored_bodies: dict[str, bytes], queries: list[list[str]]
) -> None:
    known = list(stored_bodies)
    uids = [*known, "no-such-order", *known[:5]]
    answers = asyncio.run(load_all(settings, uids, max_reads=1))
    assert answers == [stored_bodies.get(uid) for uid in uids]
    # The first miss goes out alone at once; the rest wait for it and share the next query,
    # and the repeated ids, the first one included while it is being read, join the queries
    # already asking for them.
    assert queries == [known[:1], [*known[1:], "no-such-order"]]


def test_each_query_slot_takes_a_miss_at_once_when_idle(
    settings: Settings, stored_bodies: dict[str, bytes], queries: list[list[str]]
) -> None:
    uids = list(stored_bodies)[:3]
    answers = asyncio.run(load_all(settings, uids, max_reads=3))
    assert answers == [stored_bodies[uid] for uid in uids]
    assert queries == [[uid] for uid in uids]


def test_each_query_fills_the_cache_once_with_what_it_found_before_its_callers_hear(
    settings: Settings, stored_bodies: dict[str, bytes], queries: list[list[str]]
) -> None:
    known = list(stored_bodies)
    filled: list[dict[str, bytes]] = []

    async def scenario() -> list[bytes | None]:
        async with async_pool(settings) as pool:
            documents = DocumentLoader(
                pool, max_reads=1, fill=lambda items: filled.append(dict(items))
            )

            async def load(uid: str) -> bytes | None:
                body = await documents.load(uid)
                assert any(uid in fill for fill in filled) == (body is not None)
                return body

            return await asyncio.gather(*(load(uid) for uid in [*known, "no-such-order"]))

    assert asyncio.run(scenario()) == [*stored_bodies.values(), None]
    assert filled == [{known[0]: stored_bodies[known[0]]}, {u: stored_bodies[u] for u in known[1:]}]
    assert len(queries) == 2


def test_a_cancelled_caller_leaves_the_others_their_answers(
    settings: Settings, stored_bodies: dict[str, bytes]
) -> None:
    uid = next(iter(stored_bodies))

    async def scenario() -> list[bytes | None]:
        async with async_pool(settings) as pool:
            documents = DocumentLoader(pool, max_reads=1)
            callers = [asyncio.create_task(documents.load(uid)) for _ in range(3)]
            await asyncio.sleep(0)
            callers[0].cancel()
            done = await asyncio.gather(*callers[1:])
            assert callers[0].cancelled()
            return done

    assert asyncio.run(scenario()) == [stored_bodies[uid]] * 2


def test_an_unreachable_database_fails_the_query_and_every_miss_waiting_behind_it(
    settings: Settings, stored_bodies: dict[str, bytes], queries: list[list[str]]
) -> None:
    nowhere = dataclasses.replace(settings, postgres_port=str(free_port()))
    uid = next(iter(stored_bodies))

    async def scenario() -> list[BaseException | bytes | None]:
        async with async_pool(nowhere) as pool:
            documents = DocumentLoader(pool, max_reads=1)
            return await asyncio.gather(
                *(documents.load(uid) for _ in range(3)),
                documents.load("another-order"),
                return_exceptions=True,
            )

    answers = asyncio.run(scenario())
    assert all(isinstance(answer, StoreUnavailable) for answer in answers), answers
    # One query failed; the miss that waited for a slot got its 503 without a query of its own.
    assert queries == [[uid]]


@pytest.fixture
def lagging_replica(settings: Settings, base_env: dict[str, str]) -> Iterator[Settings]:
    """A database with the schema and none of the run's orders: what a replica that has not
    replayed them yet answers."""
    name = f"{settings.postgres_db}_{uuid.uuid4().hex[:8]}"
    yield create_database(base_env, name)
    drop_database(base_env, name)


def test_an_order_the_replica_does_not_have_yet_is_asked_of_the_primary_before_any_404(
    settings: Settings,
    lagging_replica: Settings,
    stored_bodies: dict[str, bytes],
    queries: list[list[str]],
) -> None:
    uid = next(iter(stored_bodies))

    async def scenario() -> list[bytes | None]:
        async with async_pool(lagging_replica) as replica, async_pool(settings) as primary:
            documents = DocumentLoader(replica, max_reads=1, primary=primary)
            return [await documents.load(uid), await documents.load("no-such-order")]

    assert asyncio.run(scenario()) == [stored_bodies[uid], None]
    assert queries == [[uid], [uid], ["no-such-order"], ["no-such-order"]]
