"""The order routes: one order by id (cache first, then PostgreSQL), and the recent list.

A valid id is answered by `lookup`, the same code the RSGI dispatcher (dispatch.py) runs in
front of Litestar; this route defines the behaviour and the OpenAPI entry.
"""

import hmac
from typing import Annotated

from litestar import Response, get
from litestar.exceptions import NotAuthorizedException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from service.api.lookup import find_order
from service.api.problems import PROBLEM_JSON, AnyRequest, Problem
from service.api.state import AppState
from service.model import Order
from service.model.order import ORDER_UID_MAX, ORDER_UID_PATTERN
from service.store.reader import OrderSummary, fetch_recent


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


@get(
    "/order/{order_uid:str}",
    summary="One order, every field",
    responses={
        200: ResponseSpec(Order, description="The order as received", generate_examples=False),
        400: _problem("order_uid malformed"),
        404: _problem("No order with this order_uid"),
        503: _problem("Not cached, and PostgreSQL unreachable"),
    },
)
async def get_order(
    order_uid: Annotated[
        str,
        Parameter(
            description="The order's id: letters, digits, '_' or '-'",
            pattern=ORDER_UID_PATTERN,
            max_length=ORDER_UID_MAX,
        ),
    ],
    request: AnyRequest,
) -> Response[bytes]:
    """200 with the order as it was received; 400 for a malformed id (checked by Litestar
    against the parameter's pattern); 404 if unknown; 503 if the order is not cached and
    PostgreSQL is unreachable."""
    answer = await find_order(request.app.state.orders, order_uid)
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)


@get(
    "/orders",
    summary="The most recent orders",
    responses={401: _problem("RECENT_ORDERS_TOKEN is set and the request lacks it")},
)
async def recent_orders(
    request: AnyRequest,
    limit: Annotated[int, Parameter(ge=1, le=200, description="How many orders")] = 20,
) -> list[OrderSummary]:
    """With RECENT_ORDERS_TOKEN set, only for `Authorization: Bearer <token>`."""
    state: AppState = request.app.state.orders
    token = state.settings.recent_orders_token
    if token and not hmac.compare_digest(
        request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()
    ):
        raise NotAuthorizedException("this list needs the header 'Authorization: Bearer <token>'")
    return await fetch_recent(state.pool, limit)
