"""Reading an order back from the four normalised tables, for tests that check the rows hold
every field (the service itself serves the stored body from `order_documents`)."""

from typing import Any

import msgspec
import psycopg

from service.model import Delivery, Item, Order, Payment

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
