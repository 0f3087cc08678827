"""The order routes: one order by id (cache first, then PostgreSQL), and the recent list.

The hit path is a regex check, one shared-memory lookup and the stored bytes as the body:
no database work and no encoding. A miss reads the stored body by primary key: no encoding
either.
"""

import re
from typing import Annotated

from litestar import Response, get
from litestar.params import Parameter

from service import metrics
from service.api.problems import AnyRequest, problem
from service.api.state import AppState
from service.model.order import ORDER_UID_MAX, ORDER_UID_PATTERN
from service.store.reader import OrderSummary, fetch_document, fetch_recent

_VALID_UID = re.compile(ORDER_UID_PATTERN)
_OK = metrics.HTTP_REQUESTS.labels("200")
_JSON_HEADERS = {"content-type": "application/json"}


@get("/order/{order_uid:str}", summary="One order, every field")
async def get_order(order_uid: str, request: AnyRequest) -> Response[bytes]:
    """200 with the order as it was received; 400 for a malformed id; 404 if unknown;
    503 if the order is not cached and PostgreSQL is unreachable."""
    if len(order_uid) > ORDER_UID_MAX or not _VALID_UID.match(order_uid):
        return problem(  # type: ignore[return-value]
            400,
            "Bad Request",
            f"order_uid must be 1-{ORDER_UID_MAX} characters of A-Z, a-z, 0-9, '_' or '-'",
        )
    state: AppState = request.app.state.orders
    body = state.cache.get(order_uid)
    if body is not None:
        metrics.CACHE_HITS.inc()
        _OK.inc()
        return Response(body, headers=_JSON_HEADERS)
    metrics.CACHE_MISSES.inc()
    body = await fetch_document(state.pool, order_uid)
    if body is None:
        return problem(404, "Not Found", f"no order with order_uid {order_uid!r}")  # type: ignore[return-value]
    state.cache.put(order_uid, body)
    _OK.inc()
    return Response(body, headers=_JSON_HEADERS)


@get("/orders", summary="The most recent orders")
async def recent_orders(
    request: AnyRequest,
    limit: Annotated[int, Parameter(ge=1, le=200, description="How many orders")] = 20,
) -> list[OrderSummary]:
    state: AppState = request.app.state.orders
    summaries = await fetch_recent(state.pool, limit)
    _OK.inc()
    return summaries
