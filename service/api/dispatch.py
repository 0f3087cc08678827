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
import time
from typing import Any

from litestar import Litestar
from prometheus_client import Counter

from service import metrics
from service.api.bridge import RsgiToAsgi
from service.api.lookup import JSON, stored_order, valid_order_uid
from service.api.tally import Tally

_PREFIX = "/order/"
_UID_AT = len(_PREFIX)
_JSON = [("content-type", JSON)]
_HITS = metrics.CACHE_HITS
_LATENCY = metrics.HTTP_REQUEST_SECONDS


class Dispatcher:
    """The RSGI application: the order fast path in front of `app`, whose lifespan opens the
    worker's cache, pool and loader (`app.state.orders`) at start and closes them at exit."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self._bridge = RsgiToAsgi(app, self._count)  # type: ignore[arg-type]
        self._by_status: dict[int, Counter] = {}
        self._ok = self._status_counter(200)
        self._tally = Tally()

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tally.bind(loop)
        self._bridge.startup(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tally.flush()
        self._bridge.shutdown(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        method: str = scope.method
        path: str = scope.path
        if method in {"GET", "HEAD"} and path.startswith(_PREFIX):
            uid = path[_UID_AT:]
            state = self.app.state.orders
            # Looked up before it is validated: only valid ids are ever cached, and the cache
            # answers None for any other string, so a hit skips the pattern match.
            body = state.cache.get(uid)
            if body is not None:
                self._tally.count(_HITS, self._ok)
                # granian writes no body for HEAD, and the content-length still.
                protocol.response_bytes(200, _JSON, body)
                return
            if valid_order_uid(uid):
                started = time.perf_counter()
                answer = await stored_order(state, uid)
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

    def _status_counter(self, status: int) -> Counter:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = metrics.HTTP_REQUESTS.labels(str(status))
        return counter

    def _count(self, status: int) -> None:
        """Counted before the answer leaves (`Tally`), so a client reading /metrics next
        sees it."""
        self._tally.count(self._status_counter(status))
