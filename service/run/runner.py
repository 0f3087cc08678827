"""Starting and stopping the processes together: the consumer, granian's workers, the demo
producer. The parent owns the shared cache: it creates (or replaces a stale) region, starts the
children, warms the region, and removes it after they have stopped."""

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
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


class StopSignals:
    """SIGTERM and SIGINT turned into a request to stop: the handler only records the signal
    and, through the wakeup fd, wakes the runner's wait; the runner logs it."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.fd, wakeup = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(wakeup, False)
        self._wakeup = wakeup
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGTERM, self._record)
        signal.signal(signal.SIGINT, self._record)

    def _record(self, signum: int, _: object) -> None:
        self.received = signum

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 512):
                pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self.fd)
        os.close(self._wakeup)


class Children:
    """The child processes of a run: the consumer under its supervisor, granian and the demo
    producer as they are. `wait()` blocks until one of them exits, `extra_fd` (the stop
    signals) is readable, or the consumer's restart is due."""

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        consumer = commands.pop("consumer", None)
        self.consumer = ConsumerSupervisor(consumer, env) if consumer is not None else None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._exit_fds: dict[str, int] = {}
        for name, command in commands.items():
            # Each in a process group of its own, so a terminal's Ctrl-C reaches the runner
            # alone, which stops them in order (granian its workers) rather than all at once.
            self.processes[name] = process = subprocess.Popen(command, env=env, process_group=0)
            self._exit_fds[name] = os.pidfd_open(process.pid)

    def wait(self, extra_fd: int) -> None:
        fds = [extra_fd, *self._exit_fds.values()]
        timeout = None
        if self.consumer is not None:
            consumer_fd, timeout = self.consumer.wakeup()
            if consumer_fd is not None:
                fds.append(consumer_fd)
        select.select(fds, [], [], timeout)

    def check(self) -> tuple[str, int] | None:
        """(name, exit code) of a child that has exited, the consumer excepted, which is
        restarted; its supervisor raises when restarting must stop."""
        if self.consumer is not None:
            self.consumer.check()
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop(self) -> None:
        """SIGTERM all, then wait for each until STOP_GRACE_S is over; SIGKILL what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        if self.consumer is not None:
            self.consumer.stop(deadline)
        for name, process in self.processes.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", name, STOP_GRACE_S)
                process.kill()
                process.wait()
        for fd in self._exit_fds.values():
            os.close(fd)


def _preflight(settings: Settings) -> None:
    """What must hold before anything starts: a fresh metrics directory, the schema this
    build expects, and the topics."""
    metrics.reset_metrics_dir()
    require_current(settings)
    ensure_topics(settings)


def _own_cache(settings: Settings, resources: ExitStack) -> SharedCache:
    """A new region, closed and removed when the run ends."""
    cache = SharedCache.create(settings.cache_name, settings.cache_size, settings.cache_bytes)
    resources.callback(cache.unlink)
    resources.callback(cache.close)
    return cache


def _start_children(settings: Settings, parts: Parts, resources: ExitStack) -> Children:
    """The consumer, granian and the producer, stopped when the run ends."""
    log_config = logs.granian_config_file(settings)
    resources.callback(os.unlink, log_config)
    http_workers = granian_workers.workers(settings.http_workers, parts.consumer)
    env = granian_workers.granian_env(
        dict(os.environ, METRICS_DIR=str(metrics.METRICS_DIR)), http_workers
    )
    children = Children(_children(settings, parts, http_workers, log_config), env)
    resources.callback(children.stop)
    return children


def _show_page(settings: Settings) -> None:
    if settings.log_format == "TEXT":
        url = f"http://{settings.http_host}:{settings.http_port}"
        print(
            f"\n  Order page:  {url}/\n  Try:         curl {url}/order/f563feb7b2b84b6test\n",
            flush=True,
        )


def _watch(children: Children, signals: StopSignals) -> int:
    """Until a stop signal (0) or a child's death (1), the consumer's excepted."""
    while True:
        signals.drain()
        if signals.received is not None:
            log.info("received %s; stopping", signal.Signals(signals.received).name)
            return 0
        dead = children.check()
        if dead is not None:
            log.error("%s exited with code %s; stopping the rest", *dead)
            return 1
        children.wait(signals.fd)


def run(settings: Settings, parts: Parts) -> int:
    """Run the chosen parts until SIGTERM/SIGINT or until one of them dies, the consumer
    excepted: it is restarted (see service.run.supervisor). Return the exit code."""
    _preflight(settings)
    with ExitStack() as resources:
        signals = StopSignals()
        resources.callback(signals.close)
        cache = _own_cache(settings, resources)
        if settings.metrics_port:
            resources.callback(start_metrics_listener(settings, cache).shutdown)
        # The children start first, so granian's start overlaps the warm-up; /readyz answers
        # 503 until the warm-up marks the cache ready, and a miss meanwhile reads PostgreSQL.
        children = _start_children(settings, parts, resources)
        warm_cache(settings, cache)
        _show_page(settings)
        code = _watch(children, signals)
    return code
