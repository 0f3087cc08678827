"""A producer rolls out a field the contract does not name, mid-stream.

With `ORDER_UNKNOWN_FIELDS=keep` nothing is dead-lettered, the known fields are stored in
their tables, and the API answers with the message as sent, byte for byte, new fields included.
The contract it is checked against is the one the running service serves.
"""

import httpx
import pytest

from service.config import Settings
from service.model import encode_order
from service.model.contract import order_schema_json
from tests.fix_db import Conn, stored_body, stored_count, stored_order
from tests.fix_kafka import produce, topic_size
from tests.fix_processes import service_process, service_url, wait_for, wait_until_ready
from tests.orders import random_orders, with_new_fields

pytestmark = pytest.mark.integration

ORDERS = 10_000


def test_a_new_field_rolled_out_mid_stream_is_kept_and_nothing_is_dead_lettered(
    service_env: dict[str, str], settings: Settings, db: Conn
) -> None:
    env = {**service_env, "ORDER_UNKNOWN_FIELDS": "keep"}
    orders = random_orders(ORDERS, seed=7201)
    half = ORDERS // 2
    before = [encode_order(o) for o in orders[:half]]
    after = [with_new_fields(o, n) for n, o in enumerate(orders[half:])]
    messages = before + after
    uids = [o.order_uid for o in orders]
    url = service_url(env)
    with service_process(env, "run"):
        wait_until_ready(url)
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], messages, uids)
        wait_for(lambda: stored_count(db, uids) == ORDERS, what="every order stored")
        served = httpx.get(f"{url}/schema/order.json")
        assert served.headers["content-type"].startswith("application/schema+json")
        assert served.content == order_schema_json("keep")
        sampled = [*range(50), *range(half, half + 50)]
        for order, sent in [(orders[n], messages[n]) for n in sampled]:
            answer = httpx.get(f"{url}/order/{order.order_uid}")
            assert answer.status_code == 200
            assert answer.content == sent
    assert topic_size(settings.kafka_brokers, env["KAFKA_DLQ_TOPIC"]) == 0
    for order, sent in zip(orders[half:], after, strict=True):
        assert stored_order(db, order.order_uid) == order
        assert stored_body(db, order.order_uid) == sent
