"""The web page: `web/index.html` at `/`, `/info/` and the old `/order.html`, assets under
`/static/`, all with a strict Content-Security-Policy (no inline script, no foreign origin).

The assets are read once, when the app is built, and answered from memory with an ETag
(a conditional GET gets 304). Litestar's static-files router reads files through anyio, which
fails under granian's Rust task implementation (`asyncio.all_tasks()` meets its tasks, "Future
object is not initialized") and answered 500; bytes in memory need no file I/O at all, so the
page works under either task implementation. An edit to web/ shows after a restart.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from litestar import HttpMethod, MediaType, Response, Router, get, route
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

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


_MEDIA_TYPES = {
    ".css": "text/css",
    ".html": MediaType.HTML.value,
    ".js": "text/javascript",
    ".json": MediaType.JSON.value,
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets(web_dir: Path) -> dict[str, Asset]:
    """Every file of `web_dir` with a known type, by name."""
    assets = {}
    for path in sorted(web_dir.iterdir()):
        media_type = _MEDIA_TYPES.get(path.suffix)
        if media_type is not None and path.is_file():
            body = path.read_bytes()
            etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
            assets[path.name] = Asset(body, media_type, etag)
    return assets


def static_router(web_dir: Path) -> Router:
    assets = load_assets(web_dir)

    @route(
        "/{name:str}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        sync_to_thread=False,
        include_in_schema=False,
    )
    def asset(
        name: Annotated[str, Parameter(description="an asset's file name")], request: AnyRequest
    ) -> Response[bytes]:
        found = assets.get(name)
        if found is None:
            raise NotFoundException(f"No asset {name!r} under /static/.")
        # no-cache: the browser may keep it, and asks each time whether it is still current.
        headers = {**SECURITY_HEADERS, "ETag": found.etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == found.etag:
            return Response(b"", status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    return Router(path="/static", route_handlers=[asset])
