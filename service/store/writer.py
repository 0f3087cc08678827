"""The batch writer: a batch of orders into the five tables in one transaction.

Fast path: the rows are COPYed straight into the tables inside a savepoint; almost every batch
is new orders, and this is the least work PostgreSQL can do. If some order_uid is already
stored (a redelivered batch), the savepoint is rolled back and the slow path runs: COPY into
session-local staging tables, then one prepared statement moves them into the real tables
with `INSERT … ON CONFLICT DO NOTHING`, inserting the parts only of the orders that statement
itself created. Either way an order is stored whole or not at all, a redelivered batch is
harmless, and the first write of an `order_uid` wins: a later copy, in another batch or the
same one, changes nothing.
"""

from collections.abc import Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from psycopg import Cursor
from psycopg.errors import UniqueViolation

from service.errors import StoreRejected
from service.model import Order, encode_order
from service.store.db import Connection, translated_errors
from service.store.rows import BINARY_TYPES, TABLES, Document, Row, rows_by_table

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


def _copy(cur: Cursor_, statements: dict[str, bytes], tables: dict[str, list[Row]]) -> None:
    for table, rows in tables.items():
        with cur.copy(statements[table]) as copy:
            if table in BINARY_TYPES:
                copy.set_types(BINARY_TYPES[table])
            for row in rows:
                copy.write_row(row)


def first_copies(documents: Sequence[Document]) -> list[Document]:
    """The documents with later copies of the same order_uid removed (first write wins)."""
    seen: set[str] = set()
    unique = []
    for document in documents:
        if document[0].order_uid not in seen:
            seen.add(document[0].order_uid)
            unique.append(document)
    return unique


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

    def write(self, orders: Sequence[Order]) -> list[Order]:
        """Store the batch in one transaction; return the orders that were new."""
        return [order for order, _ in self.write_documents([(o, encode_order(o)) for o in orders])]

    def write_documents(self, documents: Sequence[Document]) -> list[Document]:
        """Store the orders with their encoded bodies in one transaction; return the new ones."""
        unique = first_copies(documents)
        tables = rows_by_table(unique)
        with translated_errors(), self._conn.transaction(), self._conn.cursor() as cur:
            try:
                with self._conn.transaction():
                    _copy(cur, _COPY_DIRECT, tables)
            except UniqueViolation:
                # Some order is already stored; the savepoint undid the fast path.
                _copy(cur, _COPY_STAGING, tables)
                created = {uid for (uid,) in cur.execute(_MOVE.encode(), prepare=True)}
                unique = [document for document in unique if document[0].order_uid in created]
        return unique

    def close(self) -> None:
        self._conn.close()

    def write_isolating(self, batch: Sequence[tuple[Order, Tag]]) -> Written[Tag]:
        """Store the orders, each encoded once; if PostgreSQL rejects some order, bisect until
        only the rejected ones are left out. Each order's tag (the consumer's message) comes
        back with its rejection."""
        return self._isolate([((order, encode_order(order)), tag) for order, tag in batch])

    def _isolate(self, batch: Sequence[tuple[Document, Tag]]) -> Written[Tag]:
        try:
            return Written(self.write_documents([document for document, _ in batch]), [])
        except StoreRejected as exc:
            if len(batch) == 1:
                return Written([], [(batch[0][1], exc)])
        middle = len(batch) // 2
        left, right = self._isolate(batch[:middle]), self._isolate(batch[middle:])
        return Written(left.stored + right.stored, left.rejected + right.rejected)
