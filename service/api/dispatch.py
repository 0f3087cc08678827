"""What granian calls in every worker (RSGI): `GET` and `HEAD /order/{uid}` with a valid id
answered here, everything else handed to the Litestar app through the RSGI→ASGI bridge, and
every response counted once in `http_requests_total`.

A cache hit is a lookup and `response_bytes`: no ASGI messages, no Litestar routing or
response objects, which profiling showed to be most of a hit's time. A miss answers through
`lookup.stored_order`, the code the Litestar route runs, so status, body and metrics are the
same whichever of them served it; malformed ids go to Litestar, which explains them (400).
"""

import asyncio
from typing import Any

from litestar import Litestar
from prometheus_client.metrics import Counter

from service import metrics
from service.api.bridge import RsgiToAsgi
from service.api.lookup import cached_order, stored_order, valid_order_uid

_PREFIX = "/order/"
_JSON = [("content-type", "application/json")]


class Dispatcher:
    """The RSGI application: the order fast path in front of `app`, whose lifespan opens the
    worker's cache, pool and loader (`app.state.orders`) at start and closes them at exit."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self._bridge = RsgiToAsgi(app, self._count)  # type: ignore[arg-type]
        self._counted: dict[int, Counter] = {}

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._bridge.startup(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._bridge.shutdown(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        method: str = scope.method
        path: str = scope.path
        if method in {"GET", "HEAD"} and path.startswith(_PREFIX):
            uid = path[len(_PREFIX) :]
            if valid_order_uid(uid):
                state = self.app.state.orders
                body = cached_order(state, uid)
                if body is not None:
                    # Counted before the answer leaves, so a client that reads /metrics
                    # next sees it. granian writes no body for HEAD, and content-length still.
                    self._count(200)
                    protocol.response_bytes(200, _JSON, body)
                    return
                answer = await stored_order(state, uid)
                self._count(answer.status)
                protocol.response_bytes(
                    answer.status, [("content-type", answer.media_type)], answer.body
                )
                return
        # HEAD is GET without the body (RFC 9110 §9.3.2); Litestar's routes declare GET only.
        await self._bridge(scope, protocol, "GET" if method == "HEAD" else None)

    def _count(self, status: int) -> None:
        counter = self._counted.get(status)
        if counter is None:
            counter = self._counted[status] = metrics.HTTP_REQUESTS.labels(str(status))
        counter.inc()
