"""Bytes ↔ Order: the reused decoder and encoder, the reasons a message is refused, and what
becomes of fields the contract does not name.

A message becomes a `Document` (the order and the body the API answers with) or a `Rejection`
value rather than an exception, so the ingest loop can route it to the dead-letter topic and
carry on; nothing is dropped silently.

Fields the contract does not name (`ORDER_UNKNOWN_FIELDS`): `refuse` (the default) rejects
the message as `invalid_order`; `keep` validates the known fields as always, stores them in
their tables, and keeps the unknown ones, with the values as received, in the body the API
returns (after the known fields of the same object). A message without unknown fields costs
the same either way: the lenient path runs only after the strict decoder has refused one.
"""

from typing import Any, Literal

import msgspec

from service.model.order import Delivery, Item, Order, Payment

MAX_MESSAGE_BYTES = 256 * 1024

RejectionKind = Literal["too_large", "malformed_json", "invalid_order", "nul_character"]
UnknownFields = Literal["refuse", "keep"]
UNKNOWN_FIELDS_POLICIES: tuple[UnknownFields, ...] = ("refuse", "keep")

Document = tuple[Order, bytes]  # an order and its encoded body

_decoder = msgspec.json.Decoder(Order)
_encoder = msgspec.json.Encoder()
_generic_decoder = msgspec.json.Decoder()
_FIELDS: dict[type[msgspec.Struct], frozenset[str]] = {
    cls: frozenset(cls.__struct_fields__) for cls in (Order, Delivery, Payment, Item)
}


class Rejection(msgspec.Struct, frozen=True):
    """Why a message is not an order: a stable kind for metrics and a readable reason."""

    kind: RejectionKind
    reason: str


def _has_escaped_nul(raw: bytes) -> bool:
    r"""True if a JSON string in `raw` contains `\u0000`, which PostgreSQL text cannot hold."""
    start = raw.find(b"\\u0000")
    while start != -1:
        # An odd run of backslashes before 'u' means the escape is real, not a literal "\\u0000".
        backslashes = len(raw[: start + 1]) - len(raw[: start + 1].rstrip(b"\\"))
        if backslashes % 2 == 1:
            return True
        start = raw.find(b"\\u0000", start + 1)
    return False


def _split(value: Any, cls: type[msgspec.Struct]) -> tuple[Any, dict[str, Any]]:
    """`value` (a decoded JSON object for `cls`) without the keys `cls` does not name, and
    those keys with their values. Anything not an object is left for validation to refuse."""
    if not isinstance(value, dict):
        return value, {}
    known = {k: v for k, v in value.items() if k in _FIELDS[cls]}
    return known, {k: v for k, v in value.items() if k not in _FIELDS[cls]}


def _decode_keeping_unknown(raw: bytes) -> Document | Rejection:
    """The lenient path: the known fields validated exactly as the strict decoder does, the
    unknown ones appended to their objects in the body."""
    try:
        message = _generic_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        return Rejection("malformed_json", str(exc))
    except UnicodeDecodeError as exc:
        return Rejection("malformed_json", f"invalid UTF-8: {exc}")
    known, extra = _split(message, Order)
    nested: dict[str, dict[str, Any]] = {}
    item_extras: list[dict[str, Any]] = []
    if isinstance(known, dict):
        for name, cls in (("delivery", Delivery), ("payment", Payment)):
            if name in known:
                known[name], nested[name] = _split(known[name], cls)
        if isinstance(known.get("items"), list):
            items = [_split(item, Item) for item in known["items"]]
            known["items"] = [item for item, _ in items]
            item_extras = [fields for _, fields in items]
    try:
        order = msgspec.convert(known, Order)
    except msgspec.ValidationError as exc:
        return Rejection("invalid_order", str(exc))
    body: dict[str, Any] = msgspec.to_builtins(order)
    for name, fields in nested.items():
        body[name].update(fields)
    for item, fields in zip(body["items"], item_extras, strict=True):
        item.update(fields)
    body.update(extra)
    return order, _encoder.encode(body)


def decode_order(raw: bytes, unknown_fields: UnknownFields = "refuse") -> Document | Rejection:
    """Decode and validate one message into its order and the body to store and answer with."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"message is {len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        order = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        if unknown_fields == "refuse":
            return Rejection("invalid_order", str(exc))
        result = _decode_keeping_unknown(raw)
    except msgspec.DecodeError as exc:
        return Rejection("malformed_json", str(exc))
    except UnicodeDecodeError as exc:
        # msgspec raises this, not DecodeError, for invalid UTF-8 inside a JSON string.
        return Rejection("malformed_json", f"invalid UTF-8: {exc}")
    else:
        result = order, _encoder.encode(order)
    if _has_escaped_nul(raw):
        return Rejection("nul_character", "a string contains the NUL character \\u0000")
    return result


def encode_order(order: Order) -> bytes:
    """The API's response body for an order that came without unknown fields."""
    return _encoder.encode(order)
