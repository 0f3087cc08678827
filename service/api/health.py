"""Liveness, readiness and Prometheus metrics."""

from typing import Any

from litestar import Response, get

from service import consumer_state, metrics
from service.api.problems import AnyRequest, problem
from service.api.state import AppState
from service.errors import StoreMisconfigured, StoreUnavailable
from service.store.reader import ping


@get("/healthz", sync_to_thread=False, summary="The worker is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Warm-up is done and PostgreSQL answers",
    description="The body also gives the consumer's state where this service runs one: the"
    " API serves whether or not the consumer is running.",
)
async def readyz(request: AnyRequest) -> Response[Any]:
    state: AppState = request.app.state.orders
    if not state.cache.stats().ready:
        return problem(503, "Service Unavailable", "the cache is still warming up")
    try:
        await ping(state.pool)
    except (StoreUnavailable, StoreMisconfigured) as exc:
        return problem(503, "Service Unavailable", str(exc))
    consumer = consumer_state.read()
    if consumer is None:
        return Response({"status": "ready"})
    return Response({"status": "ready", "consumer": consumer})


@get("/metrics", sync_to_thread=False, summary="Prometheus metrics of every process")
def prometheus_metrics(request: AnyRequest) -> Response[bytes]:
    state: AppState = request.app.state.orders
    stats = state.cache.stats()
    extra = [
        "# TYPE cache_entries gauge",
        f"cache_entries {stats.entries}",
        "# TYPE cache_bytes gauge",
        f"cache_bytes {stats.bytes_used}",
        "# TYPE cache_capacity gauge",
        f"cache_capacity {stats.capacity}",
        "# TYPE cache_evictions_total counter",
        f"cache_evictions_total {stats.evictions}",
    ]
    consumer = consumer_state.read()
    if consumer is not None:
        extra += consumer_state.metric_lines(consumer)
    return Response(metrics.render(extra), media_type="text/plain; version=0.0.4")
