"""The cache-hit fast path: `GET /order/{uid}` answered from the shared cache before
Litestar's routing, middleware and response machinery, which profiling showed to be ~90 % of
a hit's time. Everything else — misses, malformed ids, every other route — goes to Litestar
unchanged, so behaviour and the OpenAPI schema stay defined there (service/api/orders.py)."""

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from litestar import Litestar

from service import metrics
from service.model.order import ORDER_UID_MAX, ORDER_UID_PATTERN

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PREFIX = "/order/"
_VALID_UID = re.compile(ORDER_UID_PATTERN)
_HITS = metrics.CACHE_HITS
_OK = metrics.HTTP_REQUESTS.labels("200")


class CacheFastPath:
    """An ASGI app wrapping the Litestar app; the cache comes from the app's lifespan state."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(_PREFIX):
                uid = path[len(_PREFIX) :]
                if len(uid) <= ORDER_UID_MAX and _VALID_UID.match(uid):
                    body = self.app.state.orders.cache.get(uid)
                    if body is not None:
                        _HITS.inc()
                        _OK.inc()
                        await send(
                            {
                                "type": "http.response.start",
                                "status": 200,
                                "headers": [
                                    (b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                ],
                            }
                        )
                        await send({"type": "http.response.body", "body": body})
                        return
        await self.app(scope, receive, send)  # type: ignore[arg-type]
