"""The processes a benchmark starts: each command in its own session, always stopped at the end
of its block (SIGTERM, then SIGKILL to its group if it hangs), and readiness polled over HTTP."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import REPO, log

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 45.0
SERVICE = [sys.executable, "-m", "service"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait; if it hangs, SIGKILL its whole process group (started by us)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log(f"pid {process.pid} did not stop in {STOP_TIMEOUT_S:.0f} s; killing its group")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in its own session for the duration of the block; always stop it."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop(process)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def metrics(base_url: str) -> dict[str, float]:
    """The service's unlabelled Prometheus samples (summed over its processes) by name."""
    text = http_get(f"{base_url}/metrics").decode()
    return {name: float(value) for name, value in re.findall(r"^(\w+) (\S+)$", text, re.M)}


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Poll `url` until it answers 2xx; fail early if `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            http_get(url)
        except OSError:
            time.sleep(0.2)
        else:
            return
    raise RuntimeError(f"{url} not ready within {timeout_s:.0f} s")


def _exit(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so every `started` block still stops its process."""
    signal.signal(signal.SIGTERM, _exit)
