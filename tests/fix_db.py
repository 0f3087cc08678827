"""What the tests read back from PostgreSQL: stored orders rebuilt from the tables, their
bodies and counts, and storing orders directly for a test to start from."""

from typing import Any

import msgspec
import psycopg

from bench.common import write_orders
from service.config import Settings
from service.model import Delivery, Item, Order, Payment
from service.store.db import connect
from service.store.writer import OrderWriter

Conn = psycopg.Connection[tuple[object, ...]]


def scalar(conn: Conn, sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(str(row[0]))


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


def store(settings: Settings, orders: list[Order]) -> None:
    writer = OrderWriter(connect(settings))
    try:
        write_orders(writer, orders)
    finally:
        writer.close()


def items_count(db: Conn, uids: list[str]) -> int:
    return scalar(db, "SELECT count(*) FROM items WHERE order_uid = ANY(%s)", uids)


def assert_stored_exactly(db: Conn, orders: list[Order]) -> None:
    uids = [o.order_uid for o in orders]
    assert stored_count(db, uids) == len(set(uids))
    assert items_count(db, uids) == sum(len(o.items) for o in orders)


def stored_now(settings: Settings, uids: list[str]) -> int:
    """stored_count on a new connection: PostgreSQL restarts in between."""
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
        return stored_count(db, uids)
