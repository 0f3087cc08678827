"""The order's wire contract (`web/example-order.json` is an instance) as msgspec Structs.

Field names, order and nesting are the contract: the API returns exactly these fields, in this
order. Constraints are declared on the types so decoding and validation are one C pass. Upper
bounds keep a hostile message from blowing up memory or the database: every string has a
maximum length, integers fit their PostgreSQL columns (`integer` = int32, `bigint` = int64),
an order has 1 to 100 items.
"""

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from msgspec import Meta

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_ITEMS = 100
# An order id is also a URL path segment, so it is limited to URL-safe characters.
ORDER_UID_PATTERN = "^[A-Za-z0-9_-]+$"
ORDER_UID_MAX = 64


def _text(max_length: int) -> Meta:
    """A required, non-empty string of at most `max_length` characters."""
    return Meta(min_length=1, max_length=max_length)


OrderUid = Annotated[str, Meta(min_length=1, max_length=ORDER_UID_MAX, pattern=ORDER_UID_PATTERN)]
Short = Annotated[str, _text(64)]
Name = Annotated[str, _text(256)]
OptionalShort = Annotated[str, Meta(max_length=64)]
Money = Annotated[int, Meta(ge=0, le=INT32_MAX)]
Int32 = Annotated[int, Meta(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Meta(ge=0, le=INT64_MAX)]
# Unix seconds up to the end of year 9999, the range PostgreSQL and browsers agree on.
UnixSeconds = Annotated[int, Meta(ge=0, le=253_402_300_799)]


class Delivery(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    phone: Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}$")]
    zip: Annotated[str, Meta(pattern="^[0-9]{3,10}$")]
    city: Name
    address: Name
    region: Name
    email: Annotated[str, Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Payment(msgspec.Struct, forbid_unknown_fields=True):
    transaction: Short
    request_id: OptionalShort
    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$")]
    provider: Short
    amount: Money
    payment_dt: UnixSeconds
    bank: Short
    delivery_cost: Money
    goods_total: Money
    custom_fee: Money


class Item(msgspec.Struct, forbid_unknown_fields=True):
    chrt_id: Int64
    track_number: Short
    price: Money
    rid: Short
    name: Name
    sale: Annotated[int, Meta(ge=0, le=100)]
    size: Annotated[str, Meta(max_length=32)]
    total_price: Money
    nm_id: Int64
    brand: Name
    status: Int32


class Order(msgspec.Struct, forbid_unknown_fields=True):
    order_uid: OrderUid
    track_number: Short
    entry: Short
    delivery: Delivery
    payment: Payment
    items: Annotated[list[Item], Meta(min_length=1, max_length=MAX_ITEMS)]
    locale: Annotated[str, Meta(pattern="^[A-Za-z]{2}$")]
    internal_signature: Annotated[str, Meta(max_length=256)]
    customer_id: Short
    delivery_service: Short
    shardkey: Annotated[str, _text(16)]
    sm_id: Int32
    date_created: Annotated[datetime, Meta(tz=True)]
    oof_shard: Annotated[str, _text(16)]

    def __post_init__(self) -> None:
        # Stored as timestamptz and read back in UTC: normalising here makes the bytes the
        # consumer caches identical to the bytes a cache miss rebuilds from PostgreSQL.
        if self.date_created.utcoffset():
            self.date_created = self.date_created.astimezone(UTC)
