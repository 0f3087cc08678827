"""The web page: `web/index.html` at `/`, `/info/` and the old `/order.html`, assets under
`/static/`, all with a strict Content-Security-Policy (no inline script, no foreign origin)."""

from pathlib import Path

from litestar import MediaType, Response, Router, get
from litestar.response.base import ASGIResponse
from litestar.static_files import create_static_files_router

from service.api.page_headers import SECURITY_HEADERS
from service.api.problems import AnyRequest
from service.config import Settings


@get(["/", "/info/", "/info", "/order.html"], sync_to_thread=False, include_in_schema=False)
def page(request: AnyRequest) -> Response[bytes]:
    settings: Settings = request.app.state.settings
    return Response(
        (Path(settings.web_dir) / "index.html").read_bytes(),
        # Litestar appends "; charset=utf-8" to text types itself.
        media_type=MediaType.HTML,
        headers=SECURITY_HEADERS,
    )


def _add_security_headers(response: ASGIResponse) -> ASGIResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def static_router(web_dir: Path) -> Router:
    return create_static_files_router(
        path="/static",
        directories=[web_dir],
        after_request=_add_security_headers,  # type: ignore[arg-type]
    )
