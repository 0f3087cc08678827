"""The internal metrics listener: with METRICS_PORT set, /metrics and the status page
(`/status`, its assets and `/status.json`) are served by the runner on that port (METRICS_HOST,
loopback by default) and not on the public API port, so a deployment can keep them to the
network Prometheus scrapes from and operators reach."""

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from service.api.page_headers import SECURITY_HEADERS
from service.cache import SharedCache
from service.config import Settings
from service.errors import ConfigError
from service.observability import scrape
from service.observability.status import postgres_now, status

log = logging.getLogger(__name__)

# The status page's own files, as the public app serves them (`/static/` is the web directory).
_PAGE_FILES = {
    "/status": ("status.html", "text/html; charset=utf-8"),
    "/static/status.js": ("status.js", "text/javascript; charset=utf-8"),
    "/static/status.css": ("status.css", "text/css; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


def _routes(settings: Settings, cache: SharedCache) -> dict[str, Callable[[], tuple[bytes, str]]]:
    web = Path(settings.web_dir)
    routes: dict[str, Callable[[], tuple[bytes, str]]] = {
        "/metrics": lambda: (scrape.exposition(cache), scrape.CONTENT_TYPE),
        "/status.json": lambda: (status(cache, postgres_now(settings)), "application/json"),
    }
    for path, (name, media_type) in _PAGE_FILES.items():
        routes[path] = _file(web / name, media_type)
    return routes


def _file(path: Path, media_type: str) -> Callable[[], tuple[bytes, str]]:
    return lambda: (path.read_bytes(), media_type)


def start_metrics_listener(settings: Settings, cache: SharedCache) -> ThreadingHTTPServer:
    """Serve /metrics and the status page from a daemon thread until the returned server's
    `shutdown()`."""
    routes = _routes(settings, cache)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_error(404, "only /metrics and /status are served here")
                return
            body, media_type = route()
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    address = (settings.metrics_host, settings.metrics_port)
    try:
        server = ThreadingHTTPServer(address, Handler)
    except OSError as exc:
        raise ConfigError(
            f"Config 'METRICS_PORT'/'METRICS_HOST': cannot listen on "
            f"{settings.metrics_host}:{settings.metrics_port} ({exc.strerror}). Choose a free "
            "port and an address of this host."
        ) from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info(
        "metrics on http://%s:%s/metrics, status page on /status",
        settings.metrics_host,
        settings.metrics_port,
    )
    return server
