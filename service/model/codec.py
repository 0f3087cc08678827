"""Bytes ↔ Order: the single reused decoder and encoder, and the reasons a message is refused.

A refused message becomes a `Rejection` value rather than an exception, so the ingest loop can
route it to the dead-letter topic and carry on; nothing is dropped silently.
"""

from typing import Literal

import msgspec

from service.model.order import Order

MAX_MESSAGE_BYTES = 256 * 1024

RejectionKind = Literal["too_large", "malformed_json", "invalid_order", "nul_character"]

_decoder = msgspec.json.Decoder(Order)
_encoder = msgspec.json.Encoder()


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


def decode_order(raw: bytes) -> Order | Rejection:
    """Decode and validate one message."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"message is {len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        order = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return Rejection("invalid_order", str(exc))
    except msgspec.DecodeError as exc:
        return Rejection("malformed_json", str(exc))
    except UnicodeDecodeError as exc:
        # msgspec raises this, not DecodeError, for invalid UTF-8 inside a JSON string.
        return Rejection("malformed_json", f"invalid UTF-8: {exc}")
    if _has_escaped_nul(raw):
        return Rejection("nul_character", "a string contains the NUL character \\u0000")
    return order


def encode_order(order: Order) -> bytes:
    """The API's response body for `order`."""
    return _encoder.encode(order)
