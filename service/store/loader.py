"""Cache misses of one API worker read PostgreSQL together.

A miss asks `DocumentLoader.load` for one body. While fewer than `max_reads` queries are in
flight the id goes out at once, in a query of its own; once they are all busy, the ids asked
for meanwhile wait and leave together, in one `order_uid = ANY(...)` query, as soon as a query
returns. An id already waiting or being read is not asked for twice. So an idle worker adds
no delay, and a loaded one spends one round trip, one statement and one pool checkout on many
misses instead of one each. One query in flight per worker (`MISS_QUERIES=1`) served about
three times the misses of a query per miss, with a third of the p99 (docs/profiling-study.md,
section 5).

With reads on a replica (POSTGRES_READ_URL) the ids the replica does not have are asked of
the primary before they are answered as unknown.

What a query found is handed to `fill` (the API gives the shared cache's `try_put_many`) in
one call before its callers are answered: one lock and one native put for the whole query
instead of one each, which was 7.8 % of a worker's samples under misses.

The number of waiting ids is bounded by the requests a worker accepts (granian's
backpressure), so a query never carries more ids than that.
"""

import asyncio
from collections.abc import Callable, Iterable

from service.observability import metrics
from service.store.db import Pool
from service.store.reader import fetch_documents

_READS = metrics.DOCUMENT_READS

Waiters = dict[str, list[asyncio.Future[bytes | None]]]
Fill = Callable[[Iterable[tuple[str, bytes]]], object]


class DocumentLoader:
    """Stored response bodies by id for one event loop, read in shared queries."""

    def __init__(
        self, pool: Pool, max_reads: int, primary: Pool | None = None, fill: Fill | None = None
    ) -> None:
        self._pool = pool
        self._fill = fill
        # With reads on a replica: where the ids it does not have yet are asked again, since
        # a replica lags and "not found" there may be an order the primary has just stored.
        self._primary = primary
        self._max_reads = max_reads
        self._waiting: Waiters = {}
        self._reading: Waiters = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the reads in flight

    async def load(self, order_uid: str) -> bytes | None:
        """The body of `order_uid`, or None if there is no such order; StoreUnavailable if the
        database cannot be reached. Cancelling one caller leaves the others' answers alone."""
        answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        reading = self._reading.get(order_uid)
        if reading is not None:
            reading.append(answer)
        else:
            self._waiting.setdefault(order_uid, []).append(answer)
            self._send()
        return await answer

    def _send(self) -> None:
        if not self._waiting or len(self._tasks) >= self._max_reads:
            return
        order_uids = list(self._waiting)
        self._reading.update(self._waiting)
        self._waiting = {}
        task = asyncio.create_task(self._read(order_uids))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._send()

    async def _read(self, order_uids: list[str]) -> None:
        _READS.inc()
        failure: Exception | None = None
        try:
            bodies = await fetch_documents(self._pool, order_uids)
            missing = [order_uid for order_uid in order_uids if order_uid not in bodies]
            if self._primary is not None and missing:
                bodies.update(await fetch_documents(self._primary, missing))
        except Exception as exc:  # whatever it is, every caller waiting on this query gets it
            failure, bodies = exc, {}
            # and so do the misses waiting for a free slot: their query would go to the same
            # unreachable server and wait out the same pool timeout before its 503.
            order_uids = [*order_uids, *self._waiting]
            self._reading.update(self._waiting)
            self._waiting = {}
        if bodies and self._fill is not None:
            self._fill(bodies.items())
        for order_uid in order_uids:
            for answer in self._reading.pop(order_uid):
                if answer.done():  # the caller was cancelled
                    continue
                if failure is None:
                    answer.set_result(bodies.get(order_uid))
                else:
                    answer.set_exception(failure)
