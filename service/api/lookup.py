"""One order by id as a ready HTTP answer: the shared cache first, then PostgreSQL through the
worker's `DocumentLoader` (which reads concurrent misses together), filling the cache on the
way back unless another writer holds it (`SharedCache.try_put`). The fast path and the
Litestar route both answer through here, so a request gets the same status, body and metrics
whichever of them served it."""

import re
from dataclasses import dataclass

from service import metrics
from service.api.problems import PROBLEM_JSON, problem_body
from service.api.state import AppState
from service.errors import StoreUnavailable
from service.model.order import ORDER_UID_MAX, ORDER_UID_PATTERN

JSON = "application/json"

_VALID_UID = re.compile(ORDER_UID_PATTERN)

_HITS = metrics.CACHE_HITS
_MISSES = metrics.CACHE_MISSES
_REQUESTS = metrics.HTTP_REQUESTS
# The child of the 200 label, looked up once: labels() takes a lock and a dict lookup.
_OK = _REQUESTS.labels("200")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    media_type: str
    body: bytes


def valid_order_uid(order_uid: str) -> bool:
    return len(order_uid) <= ORDER_UID_MAX and _VALID_UID.match(order_uid) is not None


def _problem(status: int, title: str, detail: str) -> Answer:
    _REQUESTS.labels(str(status)).inc()
    return Answer(status, PROBLEM_JSON, problem_body(status, title, detail))


async def find_order(state: AppState, order_uid: str) -> Answer:
    """200 with the stored body; 404 if no such order; 503 on a miss while PostgreSQL is down.
    `order_uid` must already be valid."""
    body = state.cache.get(order_uid)
    if body is None:
        _MISSES.inc()
        try:
            body = await state.documents.load(order_uid)
        except StoreUnavailable as exc:
            metrics.STORE_UNAVAILABLE.inc()
            return _problem(503, "Service Unavailable", str(exc))
        if body is None:
            return _problem(404, "Not Found", f"no order with order_uid {order_uid!r}")
        state.cache.try_put(order_uid, body)
    else:
        _HITS.inc()
    _OK.inc()
    return Answer(200, JSON, body)
