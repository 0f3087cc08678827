"""The message contract producers write to: the order's JSON Schema, generated from the msgspec
model that validates every message (never written by hand, so it cannot drift from it).

Served at `GET /schema/order.json` and printed by `python -m service schema`. What JSON Schema
cannot say is in its description: the size limit and the NUL character, both checked before
and after decoding (`codec.py`).
"""

from functools import cache
from typing import Any

import msgspec

from service.model.codec import MAX_MESSAGE_BYTES, UnknownFields
from service.model.order import Order

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def order_schema(unknown_fields: UnknownFields) -> dict[str, Any]:
    """The JSON Schema of one message on the order topic under the given unknown-fields policy."""
    schema = msgspec.json.schema(Order)
    if unknown_fields == "keep":
        for definition in schema["$defs"].values():
            definition.pop("additionalProperties", None)
    unknown = (
        "fields the schema does not name are refused"
        if unknown_fields == "refuse"
        else "fields the schema does not name are kept, as sent, in the order the API returns"
    )
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Order message",
        "description": (
            "One order, the value of one message on the order topic, UTF-8 JSON. Beyond this "
            f"schema: the message is at most {MAX_MESSAGE_BYTES} bytes and no string holds the "
            f"NUL character (\\u0000); {unknown} (ORDER_UNKNOWN_FIELDS={unknown_fields}). "
            "A message that fails goes to the dead-letter topic with the reason."
        ),
        **schema,
    }


@cache
def order_schema_json(unknown_fields: UnknownFields) -> bytes:
    """`order_schema`, formatted for people and files."""
    return msgspec.json.format(msgspec.json.encode(order_schema(unknown_fields)), indent=2)
