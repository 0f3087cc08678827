"""The message contract: the JSON Schema generated from the model says what the decoder says.

Checked with jsonschema-rs, a maintained validator that shares no code with msgspec: the
reference order and generated orders pass, invalid ones fail, and for one field of the
reference replaced by arbitrary JSON the schema and the decoder agree.
"""

import json
import os
import subprocess
import sys
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.model import Rejection, UnknownFields, decode_order, encode_order
from service.model.contract import order_schema, order_schema_json
from tests.orders import REFERENCE, changed, random_orders, reference


def validator(unknown_fields: UnknownFields) -> Any:
    return jsonschema_rs.validator_for(order_schema(unknown_fields), validate_formats=True)


STRICT = validator("refuse")
LENIENT = validator("keep")
POLICIES: tuple[tuple[UnknownFields, Any], ...] = (("refuse", STRICT), ("keep", LENIENT))


def test_the_reference_order_meets_the_contract() -> None:
    assert STRICT.is_valid(json.loads(REFERENCE.read_bytes()))


def test_generated_valid_orders_meet_the_contract() -> None:
    for order in random_orders(300, seed=7101):
        STRICT.validate(json.loads(encode_order(order)))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("delivery.email", "nope"),
        ("delivery.phone", "12345"),
        ("delivery.zip", "12ab"),
        ("locale", "eng"),
        ("payment.currency", "US"),
        ("payment.amount", -1),
        ("payment.amount", 2**31),
        ("items.0.sale", 101),
        ("items", []),
        ("track_number", ""),
        ("track_number", ...),
        ("sm_id", "99"),
        ("date_created", "yesterday"),
        ("date_created", "2021-11-26T06:22:19"),
        ("order_uid", "../etc/passwd"),
        ("order_uid", "x" * 65),
        ("delivery.name", "n" * 257),
    ],
)
def test_an_order_the_decoder_refuses_fails_the_contract(path: str, value: object) -> None:
    raw = changed(path, value)
    assert isinstance(decode_order(raw), Rejection)
    assert not STRICT.is_valid(json.loads(raw))
    assert not LENIENT.is_valid(json.loads(raw))


def test_an_unknown_field_fails_only_the_contract_that_refuses_it() -> None:
    message = reference()
    message["loyalty_tier"] = 3
    message["delivery"]["floor"] = 4
    assert not STRICT.is_valid(message)
    assert LENIENT.is_valid(message)
    raw = json.dumps(message).encode()
    assert isinstance(decode_order(raw), Rejection)
    assert isinstance(decode_order(raw, "keep"), tuple)


FIELDS = [
    path
    for path in (
        *[k for k in reference() if k not in ("delivery", "payment", "items")],
        *[f"delivery.{k}" for k in reference()["delivery"]],
        *[f"payment.{k}" for k in reference()["payment"]],
        *[f"items.0.{k}" for k in reference()["items"][0]],
    )
    # RFC 3339 date-times: both check the format, with different tolerances (a space for
    # the 'T'); the decoder's is the one that counts.
    if path != "date_created"
]
# JSON values of every kind. No floats (JSON Schema calls 1.0 an integer, msgspec does not),
# no line breaks (Python's '$' matches before a final newline, ECMA-262's does not).
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(st.characters(blacklist_characters="\n\r\x00", codec="utf-8"), max_size=300),
    st.sampled_from(["+9720000000", "2639809", "a@b.cd", "USD", "en", "x" * 64, "x" * 65]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(), SCALARS))


@settings(max_examples=600)
@given(path=st.sampled_from(FIELDS), value=VALUES)
def test_the_schema_and_the_decoder_agree_on_any_one_field(path: str, value: object) -> None:
    raw = changed(path, value)
    message = json.loads(raw)
    for policy, schema in POLICIES:
        decoded = decode_order(raw, policy)
        assert isinstance(decoded, tuple) == schema.is_valid(message), (policy, decoded)


def test_the_command_prints_the_schema_of_the_configured_policy() -> None:
    for policy, _ in POLICIES:
        printed = subprocess.run(
            [sys.executable, "-m", "service", "schema"],
            env={**os.environ, "ORDER_UNKNOWN_FIELDS": policy},
            capture_output=True,
            check=True,
        ).stdout
        assert printed == order_schema_json(policy) + b"\n"
        assert ('"additionalProperties": false' in printed.decode()) == (policy == "refuse")
