"""One order by id as a ready HTTP answer: the shared cache first, then PostgreSQL through the
worker's `DocumentLoader` (which reads concurrent misses together and fills the cache with
each query's bodies unless another writer holds it, `SharedCache.try_put_many`). The
Litestar route answers through here; the RSGI dispatcher answers hits itself (a lookup and the
bytes, counted per loop iteration) and misses through `stored_order`, so a request gets the
same status, body and metrics whichever of them served it."""

import re
from dataclasses import dataclass

from service.api.problems import PROBLEM_JSON, problem_body
from service.api.state import AppState
from service.errors import STORE_CANNOT_ANSWER
from service.model.order import ORDER_UID_MAX, ORDER_UID_PATTERN
from service.observability import metrics

JSON = "application/json"

_VALID_UID = re.compile(ORDER_UID_PATTERN)

_HITS = metrics.CACHE_HITS
_MISSES = metrics.CACHE_MISSES


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    media_type: str
    body: bytes


def valid_order_uid(order_uid: str) -> bool:
    return len(order_uid) <= ORDER_UID_MAX and _VALID_UID.match(order_uid) is not None


async def stored_order(state: AppState, order_uid: str) -> Answer:
    """A cache miss: 200 with the stored body; 404 if no such order; 503 if PostgreSQL is
    down or refuses us for a reason an operator must fix (the message names it)."""
    _MISSES.inc()
    try:
        body = await state.documents.load(order_uid)
    except STORE_CANNOT_ANSWER as exc:
        # Asked again before the outage is the answer: the first lookup may have met a writer
        # that lost its CPU in the middle of an update (a reader's patience is bounded), or
        # the consumer may have cached the order meanwhile.
        cached = state.cache.get(order_uid)
        if cached is not None:
            return Answer(200, JSON, cached)
        metrics.STORE_UNAVAILABLE.inc()
        return Answer(503, PROBLEM_JSON, problem_body(503, "Service Unavailable", str(exc)))
    if body is None:
        detail = f"no order with order_uid {order_uid!r}"
        return Answer(404, PROBLEM_JSON, problem_body(404, "Not Found", detail))
    return Answer(200, JSON, body)


async def find_order(state: AppState, order_uid: str) -> Answer:
    """The cache, then PostgreSQL; `order_uid` must already be valid."""
    body = state.cache.get(order_uid)
    if body is not None:
        _HITS.inc()
        return Answer(200, JSON, body)
    return await stored_order(state, order_uid)
