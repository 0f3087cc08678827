"""What granian calls in every worker (RSGI): `GET` and `HEAD /order/{uid}` with a valid id
answered here, everything else handed to the Litestar app through the RSGI→ASGI bridge, and
every response counted once in `http_requests_total`.

A cache hit is a lookup and `response_bytes`: no ASGI messages, no Litestar routing or
response objects, no pattern match, and its two counts batched per loop iteration (tally.py).
A miss answers through `lookup.stored_order`, the code the Litestar route runs, so status,
body and metrics are the same whichever of them served it; malformed ids go to Litestar,
which explains them (400).
"""

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from litestar import Litestar
from prometheus_client import Counter

from service.api.bridge import RsgiToAsgi
from service.api.lookup import JSON, stored_order, valid_order_uid
from service.api.state import AppState
from service.api.tally import Tally
from service.observability import metrics

_PREFIX = "/order/"
_UID_AT = len(_PREFIX)
_JSON = [("content-type", JSON)]
_HITS = metrics.CACHE_HITS
_LATENCY = metrics.HTTP_REQUEST_SECONDS
# How long the worker's event loop may keep the GIL while one of granian's runtime threads
# waits for it to hand over a request or take a response. With CPython's default interval the
# runtime threads queue behind each loop iteration and hits fall; the bare app of the ceiling
# gains nothing from a shorter one, so it keeps the default (docs/profiling-study.md, 8.2).
GIL_SWITCH_INTERVAL_S = 0.0002


class Dispatcher:
    """The RSGI application: the order fast path in front of `app`, whose lifespan opens the
    worker's cache, pool and loader (`app.state.orders`) at start and closes them at exit."""

    # Bound in `__rsgi_init__`, once the lifespan has opened them.
    _state: AppState
    _cached: Callable[[str], bytes | None]

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self._bridge = RsgiToAsgi(app, self._count)  # type: ignore[arg-type]
        self._by_status: dict[int, tuple[Counter]] = {}
        self._hit_counts = (_HITS, *self._status_counts(200))
        self._tally = Tally()

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._tally.bind(loop)
        self._bridge.startup(loop)
        # Opened by the lifespan that just ran, and the same until the worker exits: bound
        # here, so a hit does not look them up in Litestar's `State` every time.
        self._state = self.app.state.orders
        self._cached = self._state.cache.get

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tally.flush()
        self._bridge.shutdown(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        path: str = scope.path
        method: str = scope.method
        if path.startswith(_PREFIX) and method in {"GET", "HEAD"}:
            uid = path[_UID_AT:]
            # Looked up before it is validated: only valid ids are ever cached, and the cache
            # answers None for any other string, so a hit skips the pattern match.
            body = self._cached(uid)
            if body is not None:
                self._tally.count(self._hit_counts)
                # granian writes no body for HEAD, and the content-length still.
                protocol.response_bytes(200, _JSON, body)
                return
            if valid_order_uid(uid):
                started = time.perf_counter()
                answer = await stored_order(self._state, uid)
                self._count(answer.status)
                protocol.response_bytes(
                    answer.status, [("content-type", answer.media_type)], answer.body
                )
                _LATENCY.observe(time.perf_counter() - started)
                return
        started = time.perf_counter()
        # HEAD is GET without the body (RFC 9110 §9.3.2); Litestar's routes declare GET only.
        await self._bridge(scope, protocol, "GET" if method == "HEAD" else None)
        _LATENCY.observe(time.perf_counter() - started)

    def _status_counts(self, status: int) -> tuple[Counter]:
        counts = self._by_status.get(status)
        if counts is None:
            counts = self._by_status[status] = (metrics.HTTP_REQUESTS.labels(str(status)),)
        return counts

    def _count(self, status: int) -> None:
        """Counted before the answer leaves (`Tally`), so a client reading /metrics next
        sees it."""
        self._tally.count(self._status_counts(status))
