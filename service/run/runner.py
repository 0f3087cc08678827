"""Starting and stopping the processes together: the consumer, granian's workers, the demo
producer. The parent owns the shared cache: it creates (or replaces a stale) region, starts the
children, warms the region, and removes it after they have stopped."""

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from service.cache import SharedCache
from service.config import Settings
from service.ingest.kafka import ensure_topics
from service.observability import logs, metrics
from service.observability.metrics_listener import start_metrics_listener
from service.run import granian_workers
from service.run.supervisor import ConsumerSupervisor
from service.run.warmup import warm_cache
from service.store.migrate import require_current

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0
# Shorter than STOP_GRACE_S: granian kills a worker that does not stop before the runner gives
# up on granian itself; killing granian first would orphan its workers, which keep serving on
# the port (SO_REUSEPORT) beside whatever starts next.
WORKERS_KILL_TIMEOUT_S = 20
# Slow or idle clients: a connection that has not sent a whole request head within this time
# is closed (granian's default is 30 s). HTTP/1 only, because with HTTP/2 auto-detection a
# connection that sends nothing waits for its first bytes with no timeout at all.
HEADER_READ_TIMEOUT_MS = 5_000


@dataclass(frozen=True, slots=True)
class Parts:
    """What runs beside the HTTP workers: the consumer, the demo producer."""

    consumer: bool
    demo_rate: float | None = None


def _granian_command(settings: Settings, http_workers: int, log_config: str) -> list[str]:
    """granian with the dispatcher; the runtime options come from the environment
    (`granian_workers.granian_env`)."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "rsgi",
        "--workers",
        str(http_workers),
        "--host",
        settings.http_host,
        "--port",
        str(settings.http_port),
        "--http1-header-read-timeout",
        str(HEADER_READ_TIMEOUT_MS),
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        str(WORKERS_KILL_TIMEOUT_S),
        "--no-ws",
        "--http",
        "1",
        "--log-level",
        settings.log_level.lower(),
        "--log-config",
        log_config,
        "service.api.app:app",
    ]


def _children(
    settings: Settings, parts: Parts, http_workers: int, log_config: str
) -> dict[str, list[str]]:
    service = [sys.executable, "-m", "service"]
    commands = {}
    if parts.consumer:
        commands["consumer"] = [*service, "consume"]
    commands["api"] = _granian_command(settings, http_workers, log_config)
    if parts.demo_rate:
        commands["producer"] = [
            *service,
            "produce",
            "--rate",
            str(parts.demo_rate),
            "--count",
            "1000000000",
            "--invalid-ratio",
            "0.01",
            "--reference",
        ]
    return commands


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for name, process in processes.items():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", name, STOP_GRACE_S)
            process.kill()
            process.wait()


def run(settings: Settings, parts: Parts) -> int:
    """Run the chosen parts until SIGTERM/SIGINT or until one of them dies, the consumer
    excepted: it is restarted (see service.run.supervisor). Return the exit code."""
    metrics.reset_metrics_dir()
    require_current(settings)
    ensure_topics(settings)
    cache = SharedCache.create(settings.cache_name, settings.cache_size, settings.cache_bytes)
    stopping = False

    def request_stop(signum: int, _: object) -> None:
        nonlocal stopping
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log_config = logs.granian_config_file(settings)
    listener = None
    consumer: ConsumerSupervisor | None = None
    try:
        if settings.metrics_port:
            listener = start_metrics_listener(settings, cache)
        # The children start first, so granian's start overlaps the warm-up; /readyz answers
        # 503 until the warm-up marks the cache ready, and a miss meanwhile reads PostgreSQL.
        http_workers = granian_workers.workers(settings.http_workers, parts.consumer)
        env = granian_workers.granian_env(
            dict(os.environ, METRICS_DIR=str(metrics.METRICS_DIR)), http_workers
        )
        commands = _children(settings, parts, http_workers, log_config)
        if "consumer" in commands:
            consumer = ConsumerSupervisor(commands.pop("consumer"), env)
        for name, command in commands.items():
            processes[name] = subprocess.Popen(command, env=env)
        warm_cache(settings, cache)
        if settings.log_format == "TEXT":
            url = f"http://{settings.http_host}:{settings.http_port}"
            print(
                f"\n  Order page:  {url}/\n  Try:         curl {url}/order/f563feb7b2b84b6test\n",
                flush=True,
            )
        while not stopping:
            if consumer is not None:
                consumer.check()
            for name, process in processes.items():
                if process.poll() is not None:
                    log.error("%s exited with code %s; stopping the rest", name, process.returncode)
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop(processes if consumer is None else {"consumer": consumer.process, **processes})
        if listener is not None:
            listener.shutdown()
        os.unlink(log_config)
        cache.close()
        cache.unlink()
