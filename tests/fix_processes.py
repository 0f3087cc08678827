"""Processes and infrastructure for the tests: the project's infra scripts, the service
started as a subprocess, a cache region of a test's own, waiting for a state to be reached and
for PostgreSQL and Kafka to come back after an outage, a topic consumed to its end."""

import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from service.cache import SharedCache
from service.config import Settings
from tests.fix_kafka import assignment, unread

REPO = Path(__file__).resolve().parents[1]


Completed = subprocess.CompletedProcess[str]


def infra(script: str, *args: str) -> None:
    subprocess.run(["bash", str(REPO / "infra" / script), *args], check=True)


def wait_until_ready(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} was not ready within {seconds:.0f} s")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_url(env: dict[str, str]) -> str:
    return f"http://{env.get('HTTP_HOST', '127.0.0.1')}:{env['HTTP_PORT']}"


@contextmanager
def cache_region(prefix: str, capacity: int, byte_budget: int) -> Iterator[SharedCache]:
    """A new cache region of this test only, closed and removed afterwards."""
    cache = SharedCache.create(f"{prefix}-{uuid.uuid4().hex[:12]}", capacity, byte_budget)
    try:
        yield cache
    finally:
        cache.close()
        cache.unlink()


@contextmanager
def service_process(
    env: dict[str, str], *args: str, output: IO[bytes] | None = None, netns: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m service <args>` (in network namespace `netns` when given); stopped with
    SIGTERM (SIGKILL after 60 s) on leaving. Its stdout and stderr go to `output` when given,
    else to the test's."""
    where = ["ip", "netns", "exec", netns] if netns is not None else []
    process = subprocess.Popen(
        [*where, sys.executable, "-m", "service", *args],
        env=env,
        cwd=REPO,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_service(env: dict[str, str], *args: str, timeout: float = 90) -> Completed:
    """`python -m service <args>` to its end (within `timeout`), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _postgres_answers(settings: Settings) -> bool:
    try:
        with psycopg.connect(settings.postgres_conninfo, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _kafka_answers(settings: Settings) -> bool:
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    try:
        admin.list_topics(timeout=2)
    except KafkaException:
        return False
    return True


def wait_until_up(settings: Settings, seconds: float = 120.0) -> None:
    """Block until PostgreSQL and Kafka both answer again."""
    deadline = time.monotonic() + seconds
    while not (_postgres_answers(settings) and _kafka_answers(settings)):
        if time.monotonic() > deadline:
            raise AssertionError(f"PostgreSQL or Kafka not back within {seconds:.0f} s")
        time.sleep(0.5)


@contextmanager
def outage(settings: Settings, script: str, stop: str, start: str) -> Iterator[float]:
    """Stop one piece of infrastructure (`infra/<script> <stop>`) for the block; yields the
    moment it was down. Started again, and waited for, even when the block fails."""
    infra(script, stop)
    try:
        yield time.monotonic()
    finally:
        infra(script, start)
        wait_until_up(settings)


def wait_for(
    condition: Callable[[], bool],
    seconds: float = 90.0,
    what: str = "condition",
    every: float = 0.2,
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"{what} not reached within {seconds:.0f} s")


def consume_all(env: dict[str, str]) -> None:
    """Run the consumer until the group has committed the whole topic, then stop it cleanly
    and wait until it has left the group."""
    brokers, group, topic = env["KAFKA_BROKERS"], env["KAFKA_GROUP"], env["KAFKA_TOPIC"]
    with service_process(env, "consume") as process:
        wait_for(lambda: unread(brokers, group, topic) == 0, what="the topic committed")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    wait_for(lambda: not assignment(brokers, group), what="the consumer gone from the group")
