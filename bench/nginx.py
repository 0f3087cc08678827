"""The physical anchor of the HTTP benchmark: Debian's nginx serving one order's bytes from a
file for every `/order/{uid}`, which is as little as a web server can do per request. Ours is
reported against it beside the bare granian app (bench/http.py).

nginx runs in the foreground from a configuration written into a temporary directory of its
own (pid file, logs, temporary paths), so it needs no system service and leaves nothing.
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.processes import HOST, free_port, started, wait_ready

CONFIG = """\
daemon off;
master_process on;
user root;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    open_file_cache max=16;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {host}:{port};
        root {dir};
        default_type application/json;
        location /order/ {{ try_files /order.json =404; }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError("nginx is not installed: run `bash infra/bench-deps.sh`")
    return found


@contextmanager
def nginx_serving(body: bytes, workers: int) -> Iterator[str]:
    """nginx with `workers` worker processes serving `body` on a free port; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as workdir:
        root = Path(workdir)
        (root / "order.json").write_bytes(body)
        port = free_port()
        config = root / "nginx.conf"
        config.write_text(CONFIG.format(workers=workers, dir=root, host=HOST, port=port))
        command = [nginx_binary(), "-c", str(config), "-p", str(root), "-e", str(root / "stderr")]
        with started(command, {"PATH": "/usr/sbin:/usr/bin:/bin"}) as process:
            url = f"http://{HOST}:{port}"
            wait_ready(f"{url}/order/x", process)
            yield url
