"""Liveness, readiness and Prometheus metrics."""

from typing import Any

from litestar import Response, get

from service.api.problems import AnyRequest, problem
from service.api.state import AppState
from service.errors import STORE_CANNOT_ANSWER
from service.observability import scrape
from service.run import consumer_state
from service.store.reader import ping, replica_lag


@get("/healthz", sync_to_thread=False, summary="The worker is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Warm-up is done and PostgreSQL answers",
    description="The body also gives the consumer's state where this service runs one (the"
    " API serves whether or not the consumer is running), and with POSTGRES_READ_URL how far"
    " the replica the reads go to lags behind the primary.",
)
async def readyz(request: AnyRequest) -> Response[Any]:
    state: AppState = request.app.state.orders
    if not state.cache.stats().ready:
        return problem(503, "Service Unavailable", "the cache is still warming up")
    body: dict[str, object] = {"status": "ready"}
    try:
        await ping(state.pool)
        if state.primary is not None:
            body["replica"] = await replica_lag(state.pool)
    except STORE_CANNOT_ANSWER as exc:
        return problem(503, "Service Unavailable", str(exc))
    consumer = consumer_state.read()
    if consumer is not None:
        body["consumer"] = consumer
    return Response(body)


@get("/metrics", sync_to_thread=False, summary="Prometheus metrics of every process")
def prometheus_metrics(request: AnyRequest) -> Response[bytes]:
    state: AppState = request.app.state.orders
    return Response(scrape.exposition(state.cache), media_type=scrape.CONTENT_TYPE)
