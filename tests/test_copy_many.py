"""`copy_many` against PostgreSQL: every table written in one transaction, or none of them;
the failing statement's own error; large payloads; what it refuses."""

from collections.abc import Iterator

import psycopg
import pytest

from service.config import Settings
from service.store.copy_many import copy_many
from service.store.db import Connection, connect
from tests.fix_db import Conn, scalar

pytestmark = pytest.mark.integration

A = b"COPY copy_many_a (x) FROM STDIN"
B = b"COPY copy_many_b (y) FROM STDIN"
B_BINARY = b"COPY copy_many_b (y) FROM STDIN (FORMAT BINARY)"


@pytest.fixture
def conn(settings: Settings, db: Conn) -> Iterator[Connection]:
    db.execute("DROP TABLE IF EXISTS copy_many_a, copy_many_b")
    db.execute("CREATE TABLE copy_many_a (x int PRIMARY KEY)")
    db.execute("CREATE TABLE copy_many_b (y text NOT NULL)")
    with connect(settings) as connection:
        yield connection
    db.execute("DROP TABLE copy_many_a, copy_many_b")


def counts(db: Conn) -> tuple[int, int]:
    return scalar(db, "SELECT count(*) FROM copy_many_a"), scalar(
        db, "SELECT count(*) FROM copy_many_b"
    )


def binary_text_rows(*values: bytes) -> bytes:
    """A binary COPY payload of one text column."""
    rows = b"".join(b"\x00\x01" + len(v).to_bytes(4, "big") + v for v in values)
    return b"PGCOPY\n\xff\r\n\x00" + bytes(8) + rows + b"\xff\xff"


def test_every_statement_is_committed_and_the_connection_is_left_idle(
    conn: Connection, db: Conn
) -> None:
    copy_many(conn, [(A, b"1\n2\n"), (B, b"a\nb\nc\n"), (B_BINARY, binary_text_rows(b"d"))])
    assert counts(db) == (2, 4)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert scalar(db, "SELECT count(*) FROM copy_many_b WHERE y = 'd'") == 1


def test_a_failing_statement_rolls_back_the_ones_before_it_and_raises_its_own_error(
    conn: Connection, db: Conn
) -> None:
    copy_many(conn, [(A, b"1\n")])
    with pytest.raises(psycopg.errors.UniqueViolation, match="copy_many_a_pkey"):
        copy_many(conn, [(B, b"kept?\n"), (A, b"2\n1\n"), (B, b"after\n")])
    assert counts(db) == (1, 0)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        copy_many(conn, [(A, b"3\n"), (A, b"not a number\n")])
    assert counts(db) == (1, 0)
    copy_many(conn, [(A, b"2\n"), (B, b"after the errors\n")])
    assert counts(db) == (2, 1)


def test_payloads_far_larger_than_libpq_s_buffers_arrive_whole(conn: Connection, db: Conn) -> None:
    rows = 1_000_000
    copy_many(
        conn,
        [
            (A, b"".join(b"%d\n" % i for i in range(rows))),
            (B, bytearray(b"x" * 999 + b"\n") * 5000),
        ],
    )
    assert counts(db) == (rows, 5000)


def test_a_statement_that_is_not_a_copy_from_stdin_is_refused(conn: Connection) -> None:
    with pytest.raises(RuntimeError, match="not a COPY FROM STDIN"):
        copy_many(conn, [(b"SELECT 1", b"")])
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_connection_inside_a_transaction_is_refused_and_left_as_it_was(
    conn: Connection, db: Conn
) -> None:
    conn.execute("SELECT 1")
    with pytest.raises(RuntimeError, match="inside one"):
        copy_many(conn, [(A, b"1\n")])
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    conn.rollback()
    assert counts(db) == (0, 0)
