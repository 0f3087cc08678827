"""A batch's COPY payloads: orders turned into the bytes the five tables' COPYs send, as they
arrive, off the database connection.

The consumer's main thread adds each order here right after decoding it, so the writer thread
only sends finished bytes and waits for PostgreSQL, with the GIL released: formatting rows on
the writer thread made it queue for the GIL behind the decoding, and PostgreSQL sat idle
meanwhile (docs/profiling-study.md, "ingest"). The bytes come from psycopg's own row
formatters (its C implementation), the ones `Copy.write_row` uses, which need no connection:
a `Transformer` without one dumps with the default adapters, as the writer's connection does.

A batch keeps the first copy of each `order_uid` and refuses later ones, so its payloads never
hold two rows for one key.
"""

from collections.abc import Iterable

from psycopg import abc, adapt, postgres
from psycopg._copy_base import format_row_binary, format_row_text
from psycopg.pq import Format

from service.model import Document, Order
from service.store.rows import (
    BINARY_TYPES,
    TABLES,
    delivery_row,
    item_rows,
    order_row,
    payment_row,
)

# PGCOPY binary format: the file header (signature, flags, header extension length) and the
# trailer (a field count of -1).
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"


def _binary_transformer(type_names: tuple[str, ...]) -> abc.Transformer:
    transformer = adapt.Transformer()
    oids = [postgres.types.get_oid(name) for name in type_names]
    transformer.set_dumper_types(oids, Format.BINARY)
    return transformer


class CopyBatch:
    """Orders and their bodies, formatted into one COPY payload per table (`TABLES` order)."""

    def __init__(self) -> None:
        self.documents: list[Document] = []
        self._uids: set[str] = set()
        self._text = adapt.Transformer()
        self._binary = {table: _binary_transformer(types) for table, types in BINARY_TYPES.items()}
        self._buffers = {
            table: bytearray(BINARY_HEADER if table in BINARY_TYPES else b"") for table in TABLES
        }
        self._orders = self._buffers["orders"]
        self._deliveries = self._buffers["deliveries"]
        self._payments = self._buffers["payments"]
        self._items = self._buffers["items"]
        self._bodies = self._buffers["order_documents"]
        self._bodies_tx = self._binary["order_documents"]
        self._finished = False

    @classmethod
    def of(cls, documents: Iterable[Document]) -> "CopyBatch":
        batch = cls()
        for order, body in documents:
            batch.add(order, body)
        return batch

    def add(self, order: Order, body: bytes) -> bool:
        """Format the order's rows; False, and nothing added, if its uid is already here."""
        if self._finished:
            raise RuntimeError("a batch takes no orders once its payloads are taken")
        uid = order.order_uid
        if uid in self._uids:
            return False
        self._uids.add(uid)
        self.documents.append((order, body))
        text = self._text
        format_row_text(order_row(order), text, self._orders)
        format_row_text(delivery_row(order), text, self._deliveries)
        format_row_text(payment_row(order), text, self._payments)
        for row in item_rows(order):
            format_row_text(row, text, self._items)
        format_row_binary((uid, body), self._bodies_tx, self._bodies)
        return True

    def payloads(self) -> dict[str, bytearray]:
        """Each table's complete COPY data, binary ones with their header and trailer: the
        buffers themselves, not copies (copying them cost two copies of ten megabytes a batch of
        5,000), so the batch takes no more orders after this."""
        if not self._finished:
            self._finished = True
            for table in BINARY_TYPES:
                self._buffers[table] += BINARY_TRAILER
        return self._buffers
