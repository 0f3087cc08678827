"""The messages of a COPY TO STDOUT, read straight from libpq.

psycopg's `Copy.read()` runs a generator through `Connection.wait` for every message, and the
warm-up's COPY has one message per order, a million of them at the benchmark's size
(docs/profiling-study.md, 6.2). Here a message already in libpq's buffer costs one
`PGconn.get_copy_data` call, and only an empty buffer waits for the socket (without the GIL).
The end of the COPY is handled as psycopg handles it: every result of the statement is read,
and an error among them raised as psycopg's error, so callers translate it as any other.
Leaving early (an exception in the caller) is psycopg's to clean up: its `Copy` still owns the
COPY and cancels it on exit.
"""

import select
from collections.abc import Iterator

from psycopg import Copy, errors, pq


def copy_messages(copy: Copy) -> Iterator[memoryview]:
    """Each message of `copy`'s data, in order, then the check of the statement's result."""
    conn = copy.connection
    pgconn = conn.pgconn
    get_copy_data = pgconn.get_copy_data
    readable = select.poll()
    readable.register(pgconn.socket, select.POLLIN)
    while True:
        size, data = get_copy_data(1)
        if size > 0:
            yield data
        elif size == 0:
            readable.poll()
            pgconn.consume_input()
        else:
            break
    # Every result is read, as libpq wants before the next command; the first error raised.
    failed = None
    while True:
        while pgconn.is_busy():
            readable.poll()
            pgconn.consume_input()
        if (result := pgconn.get_result()) is None:
            break
        if result.status != pq.ExecStatus.COMMAND_OK and failed is None:
            failed = result
    if failed is not None:
        raise errors.error_from_result(failed, encoding=conn.info.encoding)
