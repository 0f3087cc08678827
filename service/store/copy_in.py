"""A batch's COPY payloads: orders turned into the bytes the five tables' COPYs send, as they
arrive, off the database connection.

The consumer's main thread adds each order here right after decoding it, so the writer thread
only sends finished bytes and waits for PostgreSQL, with the GIL released: formatting rows on
the writer thread made it queue for the GIL behind the decoding, and PostgreSQL sat idle
meanwhile (docs/profiling-study.md, "ingest"). The bytes come from `_copy_rows.c`, which reads
the decoded Structs and writes the rows psycopg's own row formatters would write for them
(text format for the four tables, binary for the bodies), with no tuple built a row and no
Python object a field.

A batch keeps the first copy of each `order_uid` and refuses later ones, so its payloads never
hold two rows for one key.
"""

from collections.abc import Iterable

from service.model import Document, Order
from service.store._copy_rows import Rows
from service.store.rows import BINARY_TYPES, ROW_FIELDS, TABLES

# PGCOPY binary format: the file header (signature, flags, header extension length) and the
# trailer (a field count of -1).
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"


class CopyBatch:
    """Orders and their bodies, formatted into one COPY payload per table (`TABLES` order)."""

    def __init__(self) -> None:
        self.documents: list[Document] = []
        self._uids: set[str] = set()
        self._buffers = {
            table: bytearray(BINARY_HEADER if table in BINARY_TYPES else b"") for table in TABLES
        }
        orders, deliveries, payments, items, bodies = self._buffers.values()
        self._rows = Rows(ROW_FIELDS, (orders, deliveries, payments, items, bodies))
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
        self._rows.add(order, body)
        self._uids.add(uid)
        self.documents.append((order, body))
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
