"""Orders read back from PostgreSQL: response bodies by id, the newest bodies for the
warm-up, and the recent-orders summary for the web page.

Bodies come from `order_documents`, written by the writer with the encoder the cache uses, so
an order has the same bytes whether it reached the cache from Kafka or from the database.
"""

import asyncio
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import Copy, sql
from psycopg_pool import PoolTimeout

from service.errors import CopyFormatError, StoreUnavailable
from service.store.copy_out import copy_messages
from service.store.copy_pairs import Pair, pair_chunks
from service.store.db import Connection, Pool, translated_errors

POOL_TIMEOUT_S = 2.0
# A read, the wait for a connection included, is answered or fails within this.
READ_TIMEOUT_S = 3.0
# Reads abandoned at their deadline, referenced until they finish.
_abandoned: set[asyncio.Future[list[tuple[Any, ...]]]] = set()

# A read of the table misses use: it needs the schema and the privilege, not only a connection.
PING = "SELECT 1 FROM order_documents LIMIT 0"
DOCUMENTS_BY_UID = "SELECT order_uid, body FROM order_documents WHERE order_uid = ANY(%s)"

# The newest `limit` orders' bodies in storage order, which is arrival order: if the cache
# must evict while warming up (a byte budget too small for them all) the earliest go first.
# Sorting the bodies by date instead spilled to disk (docs/profiling-study.md, "a sort nobody
# needed"); this is a hash semi-join on the keys and a sequential scan.
_NEWEST_DOCUMENTS = """
COPY (
    SELECT d.order_uid, d.body FROM order_documents d
     WHERE d.order_uid IN (SELECT order_uid FROM orders ORDER BY date_created DESC LIMIT {limit})
) TO STDOUT (FORMAT BINARY)
"""
# Enough memory for the hash of `limit` keys (about 60 bytes each), so it never spills.
_HASH_BYTES_PER_KEY = 128

RECENT_SUMMARIES = """
SELECT o.order_uid, o.date_created, o.customer_id, p.amount, p.currency,
       (SELECT count(*) FROM items i WHERE i.order_uid = o.order_uid)
  FROM orders o JOIN payments p USING (order_uid)
 ORDER BY o.date_created DESC
 LIMIT %s
"""


class OrderSummary(msgspec.Struct):
    """One line of the recent-orders list."""

    order_uid: str
    date_created: datetime
    customer_id: str
    amount: int
    currency: str
    item_count: int


async def _run(pool: Pool, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    async with pool.connection(timeout=POOL_TIMEOUT_S) as conn:
        cur = await conn.execute(query, params, prepare=True, binary=True)
        return await cur.fetchall()


async def _query_retrying(
    pool: Pool, query: str, params: tuple[object, ...]
) -> list[tuple[Any, ...]]:
    """Run one read. A connection broken by a PostgreSQL restart is noticed here rather than
    by a check on every checkout (a round trip each): the pool then re-checks its idle
    connections and the read is tried once more, so a restart costs no request a 503."""
    with translated_errors():
        try:
            return await _run(pool, query, params)
        except psycopg.OperationalError as exc:
            if isinstance(exc, PoolTimeout):
                raise
            await pool.check()
        return await _run(pool, query, params)


async def _query(pool: Pool, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    """Run one read, answered or failed within READ_TIMEOUT_S. A server that accepts
    connections but does not answer (stopped with SIGSTOP, swamped, behind a network that
    drops rather than refuses) would otherwise hold the read, and every miss waiting for it,
    for good. Past the deadline the caller gets StoreUnavailable and the read is left to
    finish on its own, not cancelled: with a libpq older than 17 psycopg cancels a statement
    with a blocking PQcancel, which stalls the whole event loop, hits included, for as long as
    the server stays silent. The abandoned read keeps its connection until the server answers
    or its statement_timeout ends it; the pool's other connections, then its own timeout,
    serve the reads meanwhile."""
    read = asyncio.ensure_future(_query_retrying(pool, query, params))
    done: set[asyncio.Future[list[tuple[Any, ...]]]] = set()
    try:
        done, _ = await asyncio.wait((read,), timeout=READ_TIMEOUT_S)
    finally:
        if not done:
            _abandoned.add(read)
            read.add_done_callback(_forget)
    if not done:
        raise StoreUnavailable(f"PostgreSQL did not answer within {READ_TIMEOUT_S:g} s")
    return read.result()


def _forget(read: asyncio.Future[list[tuple[Any, ...]]]) -> None:
    _abandoned.discard(read)
    if not read.cancelled():
        read.exception()  # retrieved, so asyncio does not log it: the caller had its answer


async def fetch_documents(pool: Pool, order_uids: list[str]) -> dict[str, bytes]:
    """The stored response bodies of those of `order_uids` that exist, in one query;
    StoreUnavailable if the database cannot be reached."""
    return dict(await _query(pool, DOCUMENTS_BY_UID, (order_uids,)))


async def fetch_recent(pool: Pool, limit: int) -> list[OrderSummary]:
    return [OrderSummary(*row) for row in await _query(pool, RECENT_SUMMARIES, (limit,))]


# Where the server the reads go to stands: a standby's WAL received but not replayed yet
# (bytes), the age of the last transaction it replayed, and whether replay is paused. On a
# primary the first is NULL, so 0, and the others NULL.
_REPLICA_LAG = """
SELECT pg_is_in_recovery(),
       COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END
"""


class ReplicaLag(msgspec.Struct):
    """How far the server the reads go to is behind its primary."""

    standby: bool
    replay_lag_bytes: int
    last_replay_age_s: float | None
    replay_paused: bool | None


async def replica_lag(pool: Pool) -> ReplicaLag:
    (row,) = await _query(pool, _REPLICA_LAG, ())
    return ReplicaLag(*row)


async def ping(pool: Pool) -> None:
    """Raise StoreUnavailable unless a read of the table misses use goes through, or
    StoreMisconfigured when the schema or a privilege is missing."""
    await _query(pool, PING, ())


@contextmanager
def newest_documents_copy(conn: Connection, limit: int) -> Iterator[Copy]:
    """The COPY of the newest `limit` orders' (order_uid, body), binary, to be read."""
    statement = sql.SQL(_NEWEST_DOCUMENTS).format(limit=sql.Literal(limit))
    work_mem_kb = max(4096, limit * _HASH_BYTES_PER_KEY // 1024)
    with translated_errors(), conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(f"{work_mem_kb}kB")))
        cur.execute("SET LOCAL jit = off")
        with cur.copy(statement) as copy:
            yield copy


def newest_documents(
    conn: Connection, limit: int, chunk: int = 10_000
) -> Generator[list[Pair], None, None]:
    """(order_uid as ASCII bytes, body) of the newest `limit` orders, earliest stored first,
    in chunks: one binary COPY, read from libpq and parsed here (`copy_out`, `copy_pairs`)
    with a few operations per order. A body is a view on the message it came in."""
    with newest_documents_copy(conn, limit) as copy:
        try:
            yield from pair_chunks(copy_messages(copy), chunk)
        except CopyFormatError as exc:
            raise CopyFormatError(
                f"the newest orders' COPY from PostgreSQL is malformed ({exc}), so the cache "
                "is not ready; if POSTGRES_HOST is a proxy or pooler, point it at one that "
                "passes COPY through unchanged, or at PostgreSQL itself"
            ) from exc
