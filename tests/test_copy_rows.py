"""The native COPY row formatter (`service/store/_copy_rows.c`) against its reference: the
tuples of `service/store/rows.py` formatted by psycopg's own row formatters, which the writer
used before, byte for byte."""

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import adapt, postgres
from psycopg._copy_base import format_row_binary, format_row_text
from psycopg.pq import Format

from service.model import Order, encode_order
from service.store._copy_rows import Rows
from service.store.rows import (
    ROW_FIELDS,
    delivery_row,
    item_rows,
    order_row,
    payment_row,
)
from tests.orders import random_orders

# Everything text COPY escapes, the other control characters, multi-byte UTF-8 and the
# characters that only look like framing.
HOSTILE = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=40
) | st.sampled_from(["\\", "\\N", "\t\n\r\b\f\v", "a\\tb", "\u00fc\u4e2d\U0001f600", "\x7f\x01"])


def reference(orders: list[Order]) -> tuple[bytearray, ...]:
    text = adapt.Transformer()
    binary = adapt.Transformer()
    binary.set_dumper_types(
        [postgres.types.get_oid("text"), postgres.types.get_oid("bytea")], Format.BINARY
    )
    buffers = tuple(bytearray() for _ in range(5))
    for order in orders:
        format_row_text(order_row(order), text, buffers[0])
        format_row_text(delivery_row(order), text, buffers[1])
        format_row_text(payment_row(order), text, buffers[2])
        for row in item_rows(order):
            format_row_text(row, text, buffers[3])
        format_row_binary((order.order_uid, encode_order(order)), binary, buffers[4])
    return buffers


def native(orders: list[Order]) -> tuple[bytearray, ...]:
    buffers = tuple(bytearray() for _ in range(5))
    rows = Rows(ROW_FIELDS, buffers)  # type: ignore[arg-type]
    for order in orders:
        rows.add(order, encode_order(order))
    return buffers


def with_strings(order: Order, value: str) -> Order:
    """The order with every str field but order_uid set to `value`."""

    def strings(struct: msgspec.Struct, skip: str = "") -> msgspec.Struct:
        changes = {
            f: value
            for f in struct.__struct_fields__
            if isinstance(getattr(struct, f), str) and f != skip
        }
        return msgspec.structs.replace(struct, **changes)

    changed = msgspec.structs.replace(
        strings(order, skip="order_uid"),
        delivery=strings(order.delivery),
        payment=strings(order.payment),
        items=[strings(item) for item in order.items],
    )
    assert isinstance(changed, Order)
    return changed


def test_generated_orders_get_the_bytes_psycopg_writes() -> None:
    orders = random_orders(300, seed=41)
    assert native(orders) == reference(orders)


@settings(max_examples=300, deadline=None)
@given(value=HOSTILE)
def test_any_string_is_escaped_as_psycopg_escapes_it(value: str) -> None:
    (order,) = random_orders(1, seed=42)
    changed = [with_strings(order, value)]
    assert native(changed) == reference(changed)


@pytest.mark.parametrize(
    "created",
    [
        datetime(2021, 11, 26, 6, 22, 19, tzinfo=UTC),
        datetime(2021, 11, 26, 6, 22, 19, 120, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2021, 11, 26, 6, 22, 19, tzinfo=timezone(timedelta(0), "Z")),
        datetime(2021, 11, 26, 6, 22, 19, tzinfo=timezone(timedelta(hours=3))),
    ],
)
def test_a_timestamp_is_written_as_psycopg_writes_it(created: datetime) -> None:
    (order,) = random_orders(1, seed=43)
    changed = [msgspec.structs.replace(order, date_created=created)]
    assert native(changed) == reference(changed)


@pytest.mark.parametrize("number", [0, 1, 2**31 - 1, 2**63 - 1, 2**63, 2**80, -(2**63), -7])
def test_an_integer_is_written_in_decimal_whatever_its_size(number: int) -> None:
    (order,) = random_orders(1, seed=44)
    changed = [msgspec.structs.replace(order, sm_id=number)]
    assert native(changed) == reference(changed)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("a\x00b", ValueError, "cannot contain NUL"),
        (1.5, TypeError, "no COPY text format for a float field"),
        (None, TypeError, "no COPY text format for a NoneType field"),
    ],
)
def test_a_value_it_cannot_write_raises_and_appends_nothing(
    value: object, error: type[Exception], message: str
) -> None:
    good, bad = random_orders(2, seed=45)
    bad = msgspec.structs.replace(bad, items=[*bad.items[:-1]])
    bad.items.append(msgspec.structs.replace(good.items[0], brand=value))
    buffers = tuple(bytearray() for _ in range(5))
    rows = Rows(ROW_FIELDS, buffers)  # type: ignore[arg-type]
    rows.add(good, encode_order(good))
    before = [bytes(b) for b in buffers]
    with pytest.raises(error, match=message):
        rows.add(bad, encode_order(good))
    assert [bytes(b) for b in buffers] == before


def test_a_missing_attribute_raises_and_appends_nothing() -> None:
    class NoPayment(msgspec.Struct):
        order_uid: str
        delivery: object

    (order,) = random_orders(1, seed=46)
    buffers = tuple(bytearray() for _ in range(5))
    rows = Rows(ROW_FIELDS, buffers)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        rows.add(NoPayment("x", order.delivery), b"{}")  # type: ignore[arg-type]
    assert all(b == b"" for b in buffers)


@pytest.mark.parametrize(
    ("fields", "buffers", "message"),
    [
        (ROW_FIELDS[:3], (bytearray(),) * 5, "4 field tuples and 5 bytearrays"),
        (ROW_FIELDS, (bytearray(),) * 4, "4 field tuples and 5 bytearrays"),
        ((*ROW_FIELDS[:3], ()), (bytearray(),) * 5, r"fields\[3\] is not a tuple of 1 to 64"),
        ((*ROW_FIELDS[:3], (1,)), (bytearray(),) * 5, r"fields\[3\]\[0\] is not a str"),
        (ROW_FIELDS, (*(bytearray(),) * 4, b""), r"buffers\[4\] is not a bytearray"),
    ],
)
def test_a_wrong_layout_is_refused_at_construction(
    fields: tuple[object, ...], buffers: tuple[object, ...], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Rows(fields, buffers)  # type: ignore[arg-type]


def test_rows_hold_their_buffers_alive() -> None:
    buffers = tuple(bytearray() for _ in range(5))
    rows = Rows(ROW_FIELDS, buffers)  # type: ignore[arg-type]
    (order,) = random_orders(1, seed=47)
    del buffers
    rows.add(order, encode_order(order))
