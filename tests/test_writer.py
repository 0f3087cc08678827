import json

import pytest

from bench.common import write_orders
from service.model import encode_order
from service.store.writer import OrderWriter
from tests.fix_db import Conn, stored_body, stored_order
from tests.orders import as_order, random_orders, reference_dict

pytestmark = pytest.mark.integration


def read_back(db: Conn, uid: str) -> bytes | None:
    """The order as the normalised rows hold it, encoded; checks the stored body agrees."""
    order = stored_order(db, uid)
    body = stored_body(db, uid)
    if order is None:
        assert body is None
        return None
    assert body == encode_order(order)
    return body


def count(db: Conn, table: str, uid: str) -> int:
    row = db.execute(f"SELECT count(*) FROM {table} WHERE order_uid = %s", (uid,)).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_every_field_and_item_reads_back_exactly_as_written(writer: OrderWriter, db: Conn) -> None:
    orders = random_orders(50, seed=1)
    assert write_orders(writer, orders) == orders
    for order in orders:
        assert read_back(db, order.order_uid) == encode_order(order)


def test_a_redelivered_batch_stores_nothing_twice(writer: OrderWriter, db: Conn) -> None:
    orders = random_orders(20, seed=2)
    write_orders(writer, orders)
    assert write_orders(writer, orders) == []
    for order in orders:
        assert [count(db, t, order.order_uid) for t in ("orders", "deliveries", "payments")] == [
            1,
            1,
            1,
        ]
        assert count(db, "items", order.order_uid) == len(order.items)


def test_the_first_write_of_an_order_uid_wins_across_and_within_batches(
    writer: OrderWriter, db: Conn
) -> None:
    first = reference_dict()
    second = {**first, "customer_id": "second"}
    third = {**first, "customer_id": "third"}
    stored = write_orders(writer, [as_order(first), as_order(second)])
    assert [o.customer_id for o in stored] == ["test"]
    assert write_orders(writer, [as_order(third)]) == []
    body = read_back(db, first["order_uid"])
    assert body is not None
    assert json.loads(body)["customer_id"] == "test"


def test_an_order_the_database_rejects_is_isolated_and_the_rest_stored(
    writer: OrderWriter, db: Conn
) -> None:
    # A rule only the database knows: the model accepts this order, PostgreSQL refuses it.
    db.execute("ALTER TABLE items ADD CONSTRAINT no_poison CHECK (name <> 'poison')")
    try:
        orders = random_orders(30, seed=3)
        poisoned = as_order(
            reference_dict(items=[{**reference_dict()["items"][0], "name": "poison"}])
        )
        batch = [*orders[:17], poisoned, *orders[17:]]
        stored, rejected = writer.write_isolating(
            [((o, encode_order(o)), index) for index, o in enumerate(batch)]
        )
    finally:
        db.execute("ALTER TABLE items DROP CONSTRAINT no_poison")
    assert stored == [(order, encode_order(order)) for order in orders]
    assert [index for index, _ in rejected] == [17]
    assert "no_poison" in str(rejected[0][1])
    assert read_back(db, poisoned.order_uid) is None


def test_text_that_copy_escapes_reads_back_exactly(writer: OrderWriter, db: Conn) -> None:
    tricky = "tab\tnew line\nreturn\rback\\slash \\N «ёлка» 🎄"
    base = reference_dict()
    order = as_order(
        {
            **base,
            "internal_signature": tricky,
            "delivery": {**base["delivery"], "address": tricky},
            "items": [{**base["items"][0], "name": tricky}],
        }
    )
    assert write_orders(writer, [order]) == [order]
    assert read_back(db, order.order_uid) == encode_order(order)
