"""Several `COPY … FROM STDIN` sent as one simple query: one transaction, half the round trips.

psycopg runs a COPY as a statement of its own: the statement and its answer, then the data, its
end and its answer. A batch's five tables inside `BEGIN … COMMIT` cost twelve round trips, and
at low rates (a few orders a batch) each one is a wake-up of PostgreSQL's backend and of the
writer, on a machine where both wait for a core. PostgreSQL runs the statements of one simple
query as one implicit transaction, and each COPY among them asks for its data in turn (the
protocol's "multiple statements in a simple query"). So the five statements go out as one
query, and each table's data goes out once its COPY asks for it; the answer to one table's data
carries the next table's request, and the last one the commit: six round trips. An error in
any statement rolls the whole query back, and PostgreSQL skips the statements after it.

The steps are psycopg's own generators (`psycopg.generators`, run by `Connection.wait`, which
waits outside the GIL), composed the way its `Copy` composes them for one statement.
"""

from collections.abc import Sequence

from psycopg import errors, pq
from psycopg.abc import Buffer, PQGen
from psycopg.generators import copy_to, fetch_many, send

from service.store.db import Connection

# psycopg's own sizes (psycopg/_copy_base.py): a larger buffer handed to libpq at once is much
# slower, and more than this unflushed grows libpq's output buffer without bound.
_CHUNK = 128 * 1024
_FLUSH_THRESHOLD = 1024 * 1024


def copy_many(conn: Connection, copies: Sequence[tuple[bytes, Buffer]]) -> None:
    """Run each (COPY … FROM STDIN statement, its data) of `copies`, in order, in one
    transaction of its own; raise psycopg's error for the first statement that fails (nothing
    is then stored). A connection inside a transaction, or a statement that is not a COPY FROM
    STDIN, is the caller's mistake: RuntimeError."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise RuntimeError(
            "copy_many runs its own transaction; the connection is inside one "
            f"({conn.info.transaction_status.name})"
        )
    query = b"; ".join(statement for statement, _ in copies)
    with conn.lock:
        conn.wait(_copies(conn.pgconn, query, [data for _, data in copies], conn.info.encoding))


def _copies(
    pgconn: pq.abc.PGconn, query: bytes, payloads: list[Buffer], encoding: str
) -> PQGen[None]:
    pgconn.send_query(query)
    yield from send(pgconn)
    for data in payloads:
        # The previous COPY's result, if any, then this one's request for data; or an error,
        # after which the server has ended the query.
        results = yield from fetch_many(pgconn)
        _raise_failed(results, encoding)
        if not results or results[-1].status != pq.ExecStatus.COPY_IN:
            raise RuntimeError("a statement of copy_many's query is not a COPY FROM STDIN")
        yield from _send_data(pgconn, data)
    _raise_failed((yield from fetch_many(pgconn)), encoding)


def _send_data(pgconn: pq.abc.PGconn, data: Buffer) -> PQGen[None]:
    view = memoryview(data)
    unflushed = 0
    for start in range(0, len(view), _CHUNK):
        chunk = view[start : start + _CHUNK]
        unflushed += len(chunk)
        flush = unflushed >= _FLUSH_THRESHOLD
        if flush:
            unflushed = 0
        yield from copy_to(pgconn, chunk, flush=flush)
    while pgconn.put_copy_end(None) == 0:
        yield from send(pgconn)
    yield from send(pgconn)


def _raise_failed(results: list[pq.abc.PGresult], encoding: str) -> None:
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding=encoding)
