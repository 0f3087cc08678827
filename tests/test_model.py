import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.model import Rejection, decode_order, encode_order
from service.produce import random_order
from tests.orders import REFERENCE, changed, reference


def test_the_reference_order_round_trips_with_every_field() -> None:
    decoded = decode_order(REFERENCE.read_bytes())
    assert isinstance(decoded, tuple)
    order, body = decoded
    assert body == encode_order(order)
    assert json.loads(body) == reference()


@pytest.mark.parametrize(
    ("path", "value", "kind", "fragment"),
    [
        ("delivery.email", "nope", "invalid_order", "$.delivery.email"),
        ("delivery.phone", "12345", "invalid_order", "$.delivery.phone"),
        ("delivery.zip", "12ab", "invalid_order", "$.delivery.zip"),
        ("locale", "eng", "invalid_order", "$.locale"),
        ("payment.currency", "US", "invalid_order", "$.payment.currency"),
        ("payment.amount", -1, "invalid_order", "$.payment.amount"),
        ("payment.amount", 2**31, "invalid_order", "$.payment.amount"),
        ("items.0.sale", 101, "invalid_order", "$.items[0].sale"),
        ("items", [], "invalid_order", "$.items"),
        ("track_number", "", "invalid_order", "$.track_number"),
        ("track_number", ..., "invalid_order", "track_number"),
        ("sm_id", "99", "invalid_order", "$.sm_id"),
        ("date_created", "yesterday", "invalid_order", "$.date_created"),
        ("date_created", "2021-11-26T06:22:19", "invalid_order", "$.date_created"),
        ("order_uid", "../etc/passwd", "invalid_order", "$.order_uid"),
        ("surprise", 1, "invalid_order", "surprise"),
        ("items.0.name", "Mas\u0000caras", "nul_character", "NUL"),
    ],
)
def test_an_invalid_order_is_refused_with_the_field_named(
    path: str, value: object, kind: str, fragment: str
) -> None:
    result = decode_order(changed(path, value))
    assert isinstance(result, Rejection)
    assert result.kind == kind
    assert fragment in result.reason


def test_empty_optional_strings_are_accepted() -> None:
    raw = changed("items.0.size", "")
    assert isinstance(decode_order(raw), tuple)


def test_malformed_json_and_oversized_messages_are_refused() -> None:
    assert decode_order(b"{").kind == "malformed_json"  # type: ignore[union-attr]
    assert decode_order(b"").kind == "malformed_json"  # type: ignore[union-attr]
    huge = decode_order(b" " * (300 * 1024))
    assert isinstance(huge, Rejection)
    assert huge.kind == "too_large"


def test_a_literal_backslash_u0000_text_is_not_a_nul() -> None:
    assert isinstance(decode_order(changed("items.0.name", "C:\\u0000")), tuple)


def test_offsets_are_normalised_to_utc() -> None:
    decoded = decode_order(changed("date_created", "2021-11-26T09:22:19+03:00"))
    assert isinstance(decoded, tuple)
    assert json.loads(decoded[1])["date_created"] == "2021-11-26T06:22:19Z"


@settings(max_examples=200)
@given(st.randoms(use_true_random=False))
def test_random_valid_orders_round_trip_unchanged(rng: Any) -> None:
    raw = encode_order(random_order(rng))
    decoded = decode_order(raw)
    assert isinstance(decoded, tuple)
    assert decoded[1] == raw


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(decode_order(raw), tuple | Rejection)
    assert isinstance(decode_order(raw, "keep"), tuple | Rejection)
