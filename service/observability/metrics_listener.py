"""The internal metrics listener: with METRICS_PORT set, /metrics is served by the runner on
that port (METRICS_HOST, loopback by default) and not on the public API port, so a deployment
can keep it to the network Prometheus scrapes from."""

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service.cache import SharedCache
from service.config import Settings
from service.errors import ConfigError
from service.observability import scrape

log = logging.getLogger(__name__)


def start_metrics_listener(settings: Settings, cache: SharedCache) -> ThreadingHTTPServer:
    """Serve /metrics from a daemon thread until the returned server's `shutdown()`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = scrape.exposition(cache)
            self.send_response(200)
            self.send_header("Content-Type", scrape.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
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
    log.info("metrics on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
    return server
