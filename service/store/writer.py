"""The batch writer: a batch of orders into the five tables in one transaction.

A batch arrives as a `CopyBatch`: its rows already formatted, so writing is sending bytes and
waiting for PostgreSQL. Fast path: the rows are COPYed straight into the tables in a
transaction of their own, the five COPY statements sent as one query (`copy_many`: six round
trips instead of twelve; inside a caller's transaction, a savepoint and one COPY at a time).
Almost every batch is new orders, and this is the least work PostgreSQL can do (a savepoint
around it would cost two more round trips a batch). If some
order_uid is already stored (a redelivered batch), that transaction is rolled back and the
slow path runs in a new one: the same bytes COPYed into session-local staging tables, then
one prepared statement moves them into the real tables with `INSERT … ON CONFLICT DO
NOTHING`, inserting the parts only of the orders that statement itself created. Either way
an order is stored whole or not at all, a redelivered batch is harmless, and the first write
of an `order_uid` wins: a later copy, in another batch or the same one (which `CopyBatch`
refuses), changes nothing.
"""

from collections.abc import Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from psycopg import Cursor
from psycopg.errors import UniqueViolation
from psycopg.pq import TransactionStatus

from service.errors import StoreRejected
from service.model import Document
from service.store.copy_in import CopyBatch
from service.store.copy_many import copy_many
from service.store.db import Connection, translated_errors
from service.store.rows import BINARY_TYPES, TABLES

Tag = TypeVar("Tag")
Cursor_ = Cursor[tuple[Any, ...]]

_STAGING = {table: f"staging_{table}" for table in TABLES}

_CREATE_STAGING = [
    # Temporary tables are unlogged and private to the session; rows vanish at each commit.
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
    for table, staging in _STAGING.items()
]


def _copy_statement(target: str, table: str) -> bytes:
    options = " (FORMAT BINARY)" if table in BINARY_TYPES else ""
    return f"COPY {target} ({', '.join(TABLES[table])}) FROM STDIN{options}".encode()


_COPY_DIRECT = {table: _copy_statement(table, table) for table in TABLES}
_COPY_STAGING = {table: _copy_statement(_STAGING[table], table) for table in TABLES}


def _insert_children(table: str) -> str:
    columns = ", ".join(TABLES[table])
    return (
        f"{table}_new AS (INSERT INTO {table} ({columns}) "
        f"SELECT {', '.join('s.' + c for c in TABLES[table])} "
        f"FROM {_STAGING[table]} s JOIN new_orders USING (order_uid))"
    )


_MOVE = (
    "WITH new_orders AS ("
    f"INSERT INTO orders ({', '.join(TABLES['orders'])}) "
    f"SELECT {', '.join(TABLES['orders'])} FROM {_STAGING['orders']} "
    "ON CONFLICT (order_uid) DO NOTHING RETURNING order_uid), "
    + ", ".join(_insert_children(t) for t in TABLES if t != "orders")
    + " SELECT order_uid FROM new_orders"
)


def _copy(cur: Cursor_, statements: dict[str, bytes], payloads: dict[str, bytearray]) -> None:
    for table, data in payloads.items():
        with cur.copy(statements[table]) as copy:
            copy.write(data)


class Written(NamedTuple, Generic[Tag]):
    """What became of a tagged batch: the new orders with the bodies stored for them, and the
    tags of the orders PostgreSQL refused, with its reason."""

    stored: list[Document]
    rejected: list[tuple[Tag, StoreRejected]]


class OrderWriter:
    """Writes batches over one connection; build a new one after the connection is lost."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        with translated_errors(), conn.transaction():
            for statement in _CREATE_STAGING:
                conn.execute(statement.encode())

    def write_batch(self, batch: CopyBatch) -> list[Document]:
        """Store the formatted batch in one transaction; return its new orders' documents."""
        payloads = batch.payloads()
        with translated_errors():
            if self._copy_new(payloads):
                return batch.documents
            with self._conn.transaction(), self._conn.cursor() as cur:
                _copy(cur, _COPY_STAGING, payloads)
                created = {uid for (uid,) in cur.execute(_MOVE.encode(), prepare=True)}
        return [document for document in batch.documents if document[0].order_uid in created]

    def _copy_new(self, payloads: dict[str, bytearray]) -> bool:
        """The fast path; False, and nothing written, if some order is already stored."""
        try:
            if self._conn.info.transaction_status == TransactionStatus.IDLE:
                copy_many(self._conn, [(_COPY_DIRECT[t], data) for t, data in payloads.items()])
            else:
                # Inside the caller's transaction (a re-drive's, with its ledger): a savepoint.
                with self._conn.transaction(), self._conn.cursor() as cur:
                    _copy(cur, _COPY_DIRECT, payloads)
        except UniqueViolation:
            return False
        return True

    def close(self) -> None:
        self._conn.close()

    def write_isolating(
        self, tagged: Sequence[tuple[Document, Tag]], batch: CopyBatch | None = None
    ) -> Written[Tag]:
        """Store the documents (`batch`: the same, already formatted, when the caller has it);
        if PostgreSQL rejects some order, bisect until only the rejected ones are left out.
        Each document's tag (the consumer's message) comes back with its rejection."""
        if batch is None:
            batch = CopyBatch.of(document for document, _ in tagged)
        try:
            return Written(self.write_batch(batch), [])
        except StoreRejected as exc:
            if len(tagged) == 1:
                return Written([], [(tagged[0][1], exc)])
        middle = len(tagged) // 2
        left = self.write_isolating(tagged[:middle])
        right = self.write_isolating(tagged[middle:])
        return Written(left.stored + right.stored, left.rejected + right.rejected)
