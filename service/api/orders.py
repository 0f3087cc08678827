"""The order routes: one order by id (cache first, then PostgreSQL), and the recent list.

A valid id is answered by `lookup.find_order`, the same code the fast path (fastpath.py) runs
in front of Litestar; this route defines the behaviour and the OpenAPI entry.
"""

from typing import Annotated

from litestar import Response, get
from litestar.params import Parameter

from service import metrics
from service.api.lookup import find_order, valid_order_uid
from service.api.problems import AnyRequest, problem
from service.api.state import AppState
from service.model.order import ORDER_UID_MAX
from service.store.reader import OrderSummary, fetch_recent

_OK = metrics.HTTP_REQUESTS.labels("200")


@get("/order/{order_uid:str}", summary="One order, every field")
async def get_order(order_uid: str, request: AnyRequest) -> Response[bytes]:
    """200 with the order as it was received; 400 for a malformed id; 404 if unknown;
    503 if the order is not cached and PostgreSQL is unreachable."""
    if not valid_order_uid(order_uid):
        return problem(  # type: ignore[return-value]
            400,
            "Bad Request",
            f"order_uid must be 1-{ORDER_UID_MAX} characters of A-Z, a-z, 0-9, '_' or '-'",
        )
    answer = await find_order(request.app.state.orders, order_uid)
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)


@get("/orders", summary="The most recent orders")
async def recent_orders(
    request: AnyRequest,
    limit: Annotated[int, Parameter(ge=1, le=200, description="How many orders")] = 20,
) -> list[OrderSummary]:
    state: AppState = request.app.state.orders
    summaries = await fetch_recent(state.pool, limit)
    _OK.inc()
    return summaries
