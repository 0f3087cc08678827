"""The binary COPY of the warm-up: the parser of its (key, value) rows, fed the stream in any
split, and the libpq-level read of a COPY's messages against the real PostgreSQL."""

import struct

import psycopg
import pytest

from service.errors import CopyFormatError
from service.store.copy_out import copy_messages
from service.store.copy_pairs import SIGNATURE, pair_chunks
from tests.fix_db import Conn

HEADER = SIGNATURE + struct.pack(">Ii", 0, 0)
TRAILER = b"\xff\xff"
# Values that look like the format's own framing: a header, a trailer, a row start, a NULL.
TRICKY = [
    (b"order-1", b'{"order_uid":"order-1"}'),
    (b"order-2", HEADER + TRAILER),
    (b"order-3", b"\x00\x02\x00\x00\x00\x07\xff\xff\xff\xff" + TRAILER),
    (b"order-4", b""),
    (b"x" * 64, bytes(range(256)) * 10),
]


def row(key: bytes, value: bytes) -> bytes:
    return struct.pack(">hi", 2, len(key)) + key + struct.pack(">i", len(value)) + value


def stream(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return HEADER + b"".join(row(key, value) for key, value in pairs) + TRAILER


def parse(messages: list[bytes], chunk: int = 2) -> list[tuple[bytes, bytes]]:
    chunks = list(pair_chunks((memoryview(message) for message in messages), chunk))
    assert all(len(rows) >= chunk for rows in chunks[:-1])
    return [(key, bytes(value)) for rows in chunks for key, value in rows]


def test_rows_as_postgresql_sends_them_header_with_the_first_and_trailer_alone() -> None:
    messages = [HEADER + row(*TRICKY[0]), *(row(*pair) for pair in TRICKY[1:]), TRAILER]
    assert parse(messages) == TRICKY


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 19, 64])
def test_rows_split_anywhere_across_messages(size: int) -> None:
    data = stream(TRICKY)
    assert parse([data[i : i + size] for i in range(0, len(data), size)]) == TRICKY


def test_every_single_split_point() -> None:
    data = stream(TRICKY[:3])
    for cut in range(1, len(data)):
        assert parse([data[:cut], data[cut:]]) == TRICKY[:3]


def test_rows_come_in_lists_of_chunk_rows_the_last_one_shorter() -> None:
    messages = [HEADER + row(*TRICKY[0]), *(row(*pair) for pair in TRICKY[1:]), TRAILER]
    chunks = list(pair_chunks(map(memoryview, messages), 2))
    assert [len(rows) for rows in chunks] == [2, 2, 1]


def test_an_empty_result_is_a_header_and_a_trailer() -> None:
    assert parse([HEADER, TRAILER]) == []
    assert parse([HEADER + TRAILER]) == []


def test_a_header_extension_is_skipped() -> None:
    header = SIGNATURE + struct.pack(">Ii", 0, 3) + b"ext"
    assert parse([header + row(*TRICKY[0]) + TRAILER]) == TRICKY[:1]


@pytest.mark.parametrize("cut", [0, 5, len(HEADER), len(HEADER) + 4, -1])
def test_a_truncated_stream_is_an_error_at_the_end(cut: int) -> None:
    data = stream(TRICKY[:2])[:cut] if cut else b""
    with pytest.raises(CopyFormatError, match="ended before its trailer"):
        parse([data] if data else [])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"PGCOPY\n\xff\r\n\x01" + bytes(8) + TRAILER, "bad signature"),
        (b"COPY", "bad signature"),
        (HEADER + struct.pack(">hi", 3, 1) + b"k" + TRAILER, "3 fields, expected 2"),
        (HEADER + struct.pack(">hi", 2, -1) + TRAILER, "NULL field"),
        (HEADER + struct.pack(">hi", 2, 1) + b"k" + struct.pack(">i", -1), "NULL field"),
        (stream(TRICKY[:1]) + row(*TRICKY[1]), "after the binary COPY's trailer"),
        (stream(TRICKY[:1]) + b"\x00", "after the binary COPY's trailer"),
    ],
)
def test_malformed_streams_are_errors(data: bytes, error: str) -> None:
    with pytest.raises(CopyFormatError, match=error):
        parse([data])


@pytest.mark.integration
def test_the_messages_of_a_real_copy_parse_to_its_rows(
    db: Conn,
) -> None:
    query = (
        "COPY (SELECT 'k' || i, repeat(chr(65 + i % 26), i)::bytea FROM generate_series(0, 2999) i)"
        " TO STDOUT (FORMAT BINARY)"
    )
    with db.cursor() as cur, cur.copy(query) as copy:
        pairs = parse([bytes(message) for message in copy_messages(copy)])
    assert pairs == [(f"k{i}".encode(), chr(65 + i % 26).encode() * i) for i in range(3000)]
    assert db.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.integration
def test_an_error_in_the_middle_of_a_copy_is_raised_as_psycopgs_error(
    db: Conn,
) -> None:
    query = (
        "COPY (SELECT 'k' || i, (1 / (2000 - i))::text::bytea FROM generate_series(0, 5000) i)"
        " TO STDOUT (FORMAT BINARY)"
    )
    received: list[memoryview] = []
    with db.cursor() as cur, cur.copy(query) as copy:
        messages = copy_messages(copy)
        with pytest.raises(psycopg.errors.DivisionByZero):
            received.extend(messages)
    assert received
    assert db.execute("SELECT 1").fetchone() == (1,)
