"""Orders read back from PostgreSQL: one order with all its parts in one query, the newest
orders for warm-up, and the recent-orders summary for the web page.

Rows become the same `Order` Structs the consumer decoded, so `encode_order` gives the same
bytes whether an order reached the cache from Kafka or from the database.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg_pool import PoolTimeout

from service.model import Delivery, Item, Order, Payment
from service.store.db import Connection, Pool, translated_errors

POOL_TIMEOUT_S = 2.0

_items_decoder = msgspec.json.Decoder(list[Item])

_ITEM_FIELDS = Item.__struct_fields__

# The items of an order as one JSON array, in arrival order; the rest are plain columns.
_SELECT_ORDERS = f"""
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
"""

ORDER_BY_UID = _SELECT_ORDERS + " WHERE o.order_uid = %s"
# Oldest first, so that if the cache must evict while warming up it evicts the oldest.
NEWEST_ORDERS = (
    _SELECT_ORDERS
    + " WHERE o.order_uid IN (SELECT order_uid FROM orders ORDER BY date_created DESC LIMIT %s)"
    + " ORDER BY o.date_created"
)

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


def order_from_row(row: Sequence[Any]) -> Order:
    """Rebuild an Order from one row of `ORDER_BY_UID` or `NEWEST_ORDERS`."""
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


async def _run(pool: Pool, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    async with pool.connection(timeout=POOL_TIMEOUT_S) as conn:
        cur = await conn.execute(sql, params, prepare=True)
        return await cur.fetchall()


async def _query(pool: Pool, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    """Run one read. A connection broken by a PostgreSQL restart is noticed here rather than
    by a check on every checkout (a round trip each): the pool then re-checks its idle
    connections and the read is tried once more, so a restart costs no request a 503."""
    with translated_errors():
        try:
            return await _run(pool, sql, params)
        except psycopg.OperationalError as exc:
            if isinstance(exc, PoolTimeout):
                raise
            await pool.check()
        return await _run(pool, sql, params)


async def fetch_order(pool: Pool, order_uid: str) -> Order | None:
    """The stored order, or None; StoreUnavailable if the database cannot be reached."""
    rows = await _query(pool, ORDER_BY_UID, (order_uid,))
    return order_from_row(rows[0]) if rows else None


async def fetch_recent(pool: Pool, limit: int) -> list[OrderSummary]:
    return [OrderSummary(*row) for row in await _query(pool, RECENT_SUMMARIES, (limit,))]


async def ping(pool: Pool) -> None:
    """Raise StoreUnavailable unless a query goes through."""
    await _query(pool, "SELECT 1", ())


def newest_orders(conn: Connection, limit: int, chunk: int = 5000) -> Iterator[list[Order]]:
    """The newest `limit` orders, oldest of them first, in chunks (a server-side cursor)."""
    with translated_errors(), conn.transaction(), conn.cursor(name="newest_orders") as cur:
        cur.itersize = chunk
        cur.execute(NEWEST_ORDERS, (limit,))
        while rows := cur.fetchmany(chunk):
            yield [order_from_row(row) for row in rows]
