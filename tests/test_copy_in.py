import msgspec
import pytest

from service.model import encode_order
from service.store.copy_in import BINARY_HEADER, BINARY_TRAILER, CopyBatch
from tests.orders import random_orders


def test_a_later_copy_of_an_order_in_the_batch_is_refused_and_the_first_kept() -> None:
    first, other = random_orders(2, seed=91)
    later = msgspec.structs.replace(first, customer_id="later")
    batch = CopyBatch()
    assert batch.add(first, encode_order(first))
    assert not batch.add(later, encode_order(later))
    assert batch.add(other, encode_order(other))
    assert batch.documents == [(first, encode_order(first)), (other, encode_order(other))]
    assert b"later" not in batch.payloads()["orders"]


def test_payloads_hold_one_text_line_per_row_and_a_framed_binary_table() -> None:
    orders = random_orders(5, seed=92)
    payloads = CopyBatch.of((o, encode_order(o)) for o in orders).payloads()
    assert payloads["orders"].count(b"\n") == 5
    assert payloads["items"].count(b"\n") == sum(len(o.items) for o in orders)
    documents = payloads["order_documents"]
    assert documents.startswith(BINARY_HEADER)
    assert documents.endswith(BINARY_TRAILER)
    assert all(encode_order(o) in documents for o in orders)


def test_an_empty_batch_is_a_valid_empty_copy() -> None:
    payloads = CopyBatch().payloads()
    assert payloads["orders"] == b""
    assert payloads["order_documents"] == BINARY_HEADER + BINARY_TRAILER


def test_taking_the_payloads_ends_the_batch() -> None:
    first, second = random_orders(2, seed=93)
    batch = CopyBatch.of([(first, encode_order(first))])
    payloads = batch.payloads()
    assert batch.payloads() == payloads
    assert payloads["order_documents"].count(BINARY_TRAILER) == 1
    with pytest.raises(RuntimeError, match="no orders once its payloads are taken"):
        batch.add(second, encode_order(second))
