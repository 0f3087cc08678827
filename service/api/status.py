"""The live status page: `/status` (web/status.html, drawn by web/status.js) and the document
it polls, `/status.json` (`service/observability/status.py`). Exposed like `/metrics`: on the
public port unless METRICS_PORT moves both to the internal listener."""

from pathlib import Path

from litestar import MediaType, Response, get

from service.api.page_headers import SECURITY_HEADERS
from service.api.problems import AnyRequest
from service.api.state import AppState
from service.observability.status import postgres_through, status

NO_STORE = {"cache-control": "no-store"}


@get("/status", sync_to_thread=False, include_in_schema=False)
def status_page(request: AnyRequest) -> Response[bytes]:
    state: AppState = request.app.state.orders
    return Response(
        (Path(state.settings.web_dir) / "status.html").read_bytes(),
        media_type=MediaType.HTML,
        headers={**SECURITY_HEADERS, **NO_STORE},
    )


@get("/status.json", summary="What the status page shows: consumer, Kafka, PostgreSQL, flow")
async def status_document(request: AnyRequest) -> Response[bytes]:
    state: AppState = request.app.state.orders
    body = status(state.cache, await postgres_through(state.pool))
    return Response(body, media_type=MediaType.JSON, headers=NO_STORE)
