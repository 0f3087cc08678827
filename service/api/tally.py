"""Prometheus counter increments of one worker, batched per event-loop iteration.

A multiprocess `Counter.inc` takes a lock, asks the OS for the pid (a fork check) and writes
the mmap file: in the hit flamegraph the two per hit were about half of the worker's Python
time. So the counts of the first request after a quiet moment go straight to Prometheus, and
those of the requests answered later in the same loop iteration wait for its end and go out
as one `inc(n)` per counter. A lone request is therefore counted before its answer leaves (a
client that reads /metrics next always sees it), and under load the cost is a few increments
per iteration instead of two per request. `flush` at shutdown writes what is left.
"""

import asyncio

from prometheus_client import Counter


class Tally:
    """Counts for one event loop; call `count` only from that loop's thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[tuple[Counter, ...], int] = {}
        self._flush_scheduled = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def count(self, counters: tuple[Counter, ...]) -> None:
        """One request's counts: straight to Prometheus if it is the first of this loop
        iteration, else at the iteration's end. Each request adds 1 to every counter of
        `counters`; the tuple is the key while it waits (one dict update per request), so
        pass the same tuple object every time."""
        if self._flush_scheduled:
            waiting = self._waiting
            waiting[counters] = waiting.get(counters, 0) + 1
            return
        for counter in counters:
            counter.inc()
        if self._loop is not None:
            # Runs after every callback already ready, i.e. after the requests of this iteration.
            self._loop.call_soon(self.flush)
            self._flush_scheduled = True

    def flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, {}
        for counters, n in waiting.items():
            for counter in counters:
                counter.inc(n)
