"""Order → table rows: the column lists of the five tables and the tuples COPY writes.

Four tables hold the order normalised; `order_documents` holds its encoded response body
(see migrations/0002), which the caller encodes once and also hands to the cache. The column
lists are the single source for the COPY statements, the staging tables, the consumer's native
row formatter and the benchmark's `psql \\copy` ceiling, so all of them write the same rows; the
tuples below are the reference that formatter is tested against.
"""

from collections.abc import Iterator

from service.model import Order

ORDER_COLUMNS = (
    "order_uid",
    "track_number",
    "entry",
    "locale",
    "internal_signature",
    "customer_id",
    "delivery_service",
    "shardkey",
    "sm_id",
    "date_created",
    "oof_shard",
)
DELIVERY_COLUMNS = ("order_uid", "name", "phone", "zip", "city", "address", "region", "email")
PAYMENT_COLUMNS = (
    "order_uid",
    "transaction",
    "request_id",
    "currency",
    "provider",
    "amount",
    "payment_dt",
    "bank",
    "delivery_cost",
    "goods_total",
    "custom_fee",
)
ITEM_COLUMNS = (
    "order_uid",
    "line_no",
    "chrt_id",
    "track_number",
    "price",
    "rid",
    "name",
    "sale",
    "size",
    "total_price",
    "nm_id",
    "brand",
    "status",
)

DOCUMENT_COLUMNS = ("order_uid", "body")

TABLES: dict[str, tuple[str, ...]] = {
    "orders": ORDER_COLUMNS,
    "deliveries": DELIVERY_COLUMNS,
    "payments": PAYMENT_COLUMNS,
    "items": ITEM_COLUMNS,
    "order_documents": DOCUMENT_COLUMNS,
}

# Tables COPYed in binary format, with their column types: a kilobyte of bytea costs half as
# much to send this way as hex-escaped in text format.
BINARY_TYPES: dict[str, tuple[str, ...]] = {"order_documents": ("text", "bytea")}

# The attributes of the order, its delivery, its payment and an item that make the rows of
# orders, deliveries, payments and items: the columns, less the order_uid that leads every
# child row and the line_no that follows it in items (the consumer's rows, `_copy_rows.c`).
ROW_FIELDS = (ORDER_COLUMNS, DELIVERY_COLUMNS[1:], PAYMENT_COLUMNS[1:], ITEM_COLUMNS[2:])

Row = tuple[object, ...]


def order_row(order: Order) -> Row:
    return (
        order.order_uid,
        order.track_number,
        order.entry,
        order.locale,
        order.internal_signature,
        order.customer_id,
        order.delivery_service,
        order.shardkey,
        order.sm_id,
        order.date_created,
        order.oof_shard,
    )


def delivery_row(order: Order) -> Row:
    d = order.delivery
    return (order.order_uid, d.name, d.phone, d.zip, d.city, d.address, d.region, d.email)


def payment_row(order: Order) -> Row:
    p = order.payment
    return (
        order.order_uid,
        p.transaction,
        p.request_id,
        p.currency,
        p.provider,
        p.amount,
        p.payment_dt,
        p.bank,
        p.delivery_cost,
        p.goods_total,
        p.custom_fee,
    )


def item_rows(order: Order) -> Iterator[Row]:
    uid = order.order_uid
    for line_no, i in enumerate(order.items):
        yield (
            uid,
            line_no,
            i.chrt_id,
            i.track_number,
            i.price,
            i.rid,
            i.name,
            i.sale,
            i.size,
            i.total_price,
            i.nm_id,
            i.brand,
            i.status,
        )
