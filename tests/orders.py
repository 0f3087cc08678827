"""Helpers for tests: orders built from the reference order or the demo producer."""

import json
import random
import uuid
from pathlib import Path
from typing import Any

from service.model import Order, decode_order, encode_order
from service.produce import random_order

REFERENCE = Path(__file__).resolve().parents[1] / "web" / "example-order.json"


def reference_dict(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = json.loads(REFERENCE.read_bytes())
    order["order_uid"] = uuid.uuid4().hex
    order.update(changes)
    return order


def reference() -> dict[str, Any]:
    """The reference order as sent, its own order_uid included."""
    return json.loads(REFERENCE.read_bytes())  # type: ignore[no-any-return]


def changed(path: str, value: object) -> bytes:
    """The reference order with the field at `path` ("items.0.sale") set to `value`, or
    deleted for `...`, as a message."""
    order = reference()
    *parents, last = path.split(".")
    target: Any = order
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is ...:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return json.dumps(order).encode()


def as_order(raw: bytes | dict[str, Any]) -> Order:
    result = decode_order(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
    assert isinstance(result, tuple), result
    return result[0]


def random_orders(count: int, seed: int = 0) -> list[Order]:
    """`count` valid orders, the same for the same seed. Tests share the run's database, so each
    test passes an integer seed no other test uses (hypothesis-drawn ones are strings)."""
    rng = random.Random(seed)
    return [random_order(rng) for _ in range(count)]


def with_new_fields(order: Order, number: int) -> bytes:
    """`order` as a producer with the new version sends it: fields appended to the order, its
    delivery and each item, with values of every JSON kind but floats."""
    message: dict[str, Any] = json.loads(encode_order(order))
    message["delivery"]["floor"] = number % 30
    for item in message["items"]:
        item["gift_wrap"] = number % 2 == 0
    message["loyalty"] = {"tier": f"tier-{number % 3}", "points": [number, None, "∞"]}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
