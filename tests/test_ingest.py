import json
import signal
import uuid

import pytest

from service.config import Settings
from service.model import encode_order
from tests.fix_db import Conn, scalar, stored_body, stored_count, stored_order
from tests.fix_kafka import headers, produce, read_all
from tests.fix_processes import service_process, wait_for
from tests.orders import random_orders, reference_dict

pytestmark = pytest.mark.integration


@pytest.fixture
def env(base_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """A fresh topic and consumer group for each test."""
    topic = f"ingest-{uuid.uuid4().hex[:10]}"
    return {
        **base_env,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
    }


def test_produced_orders_are_stored_with_every_nested_row_equal(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    orders = random_orders(300, seed=10)
    uids = [o.order_uid for o in orders]
    with service_process(env, "consume"):
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], [encode_order(o) for o in orders], uids)
        wait_for(lambda: stored_count(db, uids) == len(orders), what="all orders stored")
    for order in orders:
        assert stored_order(db, order.order_uid) == order
        assert stored_body(db, order.order_uid) == encode_order(order)
    items = scalar(db, "SELECT count(*) FROM items WHERE order_uid = ANY(%s)", uids)
    assert items == sum(len(o.items) for o in orders)


def test_a_batch_delivered_twice_makes_no_duplicate_rows(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    orders = random_orders(100, seed=11)
    uids = [o.order_uid for o in orders]
    values = [encode_order(o) for o in orders]
    with service_process(env, "consume"):
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], values + values, uids + uids)
        wait_for(lambda: stored_count(db, uids) == len(orders), what="orders stored")
        last = orders[-1]
        marker = reference_dict()
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], [json.dumps(marker).encode()])
        wait_for(lambda: stored_count(db, [marker["order_uid"]]) == 1, what="marker stored")
    assert stored_count(db, uids) == len(orders)
    assert scalar(db, "SELECT count(*) FROM items WHERE order_uid = %s", last.order_uid) == len(
        last.items
    )


def _invalid_messages() -> dict[str, tuple[bytes, str]]:
    """Each refused message with the error kind it must be dead-lettered with."""

    def variant(**changes: object) -> bytes:
        return json.dumps(reference_dict(**changes)).encode()

    missing = reference_dict()
    del missing["track_number"]
    item = reference_dict()["items"][0]
    return {
        "malformed": (b'{"order_uid": "x", ', "malformed_json"),
        "wrong_type": (variant(sm_id="ninety-nine"), "invalid_order"),
        "missing_field": (json.dumps(missing).encode(), "invalid_order"),
        "bad_email": (
            variant(delivery={**reference_dict()["delivery"], "email": "no"}),
            "invalid_order",
        ),
        "zero_items": (variant(items=[]), "invalid_order"),
        "oversized": (variant(internal_signature="x" * 300_000), "too_large"),
        "int_too_large": (variant(items=[{**item, "chrt_id": 2**63}]), "invalid_order"),
        "nul": (variant(customer_id="a\u0000b"), "nul_character"),
    }


def test_each_invalid_message_is_dead_lettered_with_its_reason_and_the_next_valid_one_stored(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    cases = _invalid_messages()
    valid = reference_dict()
    values = [raw for raw, _ in cases.values()] + [json.dumps(valid).encode()]
    with service_process(env, "consume"):
        # One partition key, so the valid order comes after every invalid one.
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], values, ["same"] * len(values))
        wait_for(lambda: stored_count(db, [valid["order_uid"]]) == 1, what="valid order stored")
    dead = read_all(settings.kafka_brokers, env["KAFKA_DLQ_TOPIC"], len(cases))
    assert len(dead) == len(cases)
    by_value = {message.value(): headers(message) for message in dead}
    for name, (raw, kind) in cases.items():
        assert raw in by_value, name
        meta = by_value[raw]
        assert meta["error.kind"] == kind, name
        assert meta["error.message"], name
        assert meta["original.topic"] == env["KAFKA_TOPIC"]
        assert int(meta["original.offset"]) >= 0


def test_sigterm_finishes_the_batch_commits_and_exits_zero(
    env: dict[str, str], settings: Settings, db: Conn
) -> None:
    orders = random_orders(3_000, seed=13)
    uids = [o.order_uid for o in orders]
    with service_process({**env, "INGEST_BATCH_SIZE": "200"}, "consume") as process:
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], [encode_order(o) for o in orders], uids)
        wait_for(lambda: stored_count(db, uids) > 0, what="ingest under way")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    # Whatever was not stored before the stop is stored by the next run: nothing is lost.
    with service_process(env, "consume"):
        wait_for(lambda: stored_count(db, uids) == len(orders), what="every order stored")
