"""Session fixtures: real PostgreSQL and Kafka started once (by the project's own infra
scripts), and for this test run its own database, topics, consumer group and cache region,
so runs never see each other's data."""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from service.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:8]
# Before anything imports prometheus_client: this run's metrics go to their own directory.
os.environ.setdefault("METRICS_DIR", f"/tmp/order-service-test-metrics-{RUN_ID}")


def infra(script: str, *args: str) -> None:
    subprocess.run(["bash", str(REPO / "infra" / script), *args], check=True)


@pytest.fixture(scope="session")
def base_env() -> dict[str, str]:
    """Environment for the service under test, also handed to its subprocesses."""
    return {
        **os.environ,
        "POSTGRES_DB": f"orders_test_{RUN_ID}",
        "KAFKA_TOPIC": f"orders-test-{RUN_ID}",
        "KAFKA_GROUP": f"orders-test-{RUN_ID}",
        "KAFKA_PARTITIONS": "3",
        "CACHE_NAME": f"orders-test-{RUN_ID}",
        "CACHE_SIZE": "10000",
        "INGEST_BATCH_WAIT_MS": "50",
        # A free port, not a fixed one: granian shares a port (SO_REUSEPORT) with a server
        # left over from another run, which would then answer some of our requests.
        "HTTP_PORT": os.environ.get("TEST_HTTP_PORT") or str(free_port()),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def infrastructure() -> None:
    """PostgreSQL and Kafka up (a no-op when they already are)."""
    infra("postgres.sh", "up")
    infra("kafka.sh", "up")


@pytest.fixture(scope="session")
def settings(infrastructure: None, base_env: dict[str, str]) -> Iterator[Settings]:
    """Settings for this run, with its own migrated database (dropped at the end)."""
    settings = load_settings(base_env)
    admin = load_settings({**base_env, "POSTGRES_DB": "postgres"}).postgres_conninfo
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{settings.postgres_db}"')
    subprocess.run(
        [sys.executable, "-m", "service", "migrate", "up"], env=base_env, check=True, cwd=REPO
    )
    yield settings
    drop_database(admin, settings.postgres_db)


@pytest.fixture
def empty_database(settings: Settings, base_env: dict[str, str]) -> Iterator[Settings]:
    """Settings for a database of this test alone, created without the schema (dropped at the
    end): for tests that migrate, or need no schema, without touching the run's database."""
    name = f"{settings.postgres_db}_{uuid.uuid4().hex[:8]}"
    admin = load_settings({**base_env, "POSTGRES_DB": "postgres"}).postgres_conninfo
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield load_settings({**base_env, "POSTGRES_DB": name})
    drop_database(admin, name)


def drop_database(admin: str, name: str, tries: int = 20) -> None:
    """DROP DATABASE … WITH (FORCE), retried for a while: it fails while an autovacuum worker
    (a superuser process, which our role may not terminate) is on the database."""
    for _ in range(tries - 1):
        try:
            _drop(admin, name)
        except psycopg.errors.InsufficientPrivilege:
            time.sleep(0.5)
        else:
            return
    _drop(admin, name)


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        yield conn


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


@pytest.fixture(scope="session")
def api_url(settings: Settings, base_env: dict[str, str]) -> Iterator[str]:
    """`python -m service serve` (cache owner, warm-up, granian workers) for this run."""
    process = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=base_env, cwd=REPO)
    url = f"http://127.0.0.1:{settings.http_port}"
    try:
        wait_until_ready(url)
        yield url
    finally:
        process.terminate()
        process.wait(60)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def service_env(base_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """Environment for a service instance of one test: its own topics, consumer group, HTTP
    port, cache region and metrics directory (the database is the run's)."""
    name = f"svc-{uuid.uuid4().hex[:10]}"
    return {
        **base_env,
        "KAFKA_TOPIC": name,
        "KAFKA_GROUP": name,
        "KAFKA_DLQ_TOPIC": f"{name}.dlq",
        "HTTP_PORT": str(free_port()),
        "CACHE_NAME": name,
        "METRICS_DIR": f"/tmp/order-service-{name}",
    }


def service_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['HTTP_PORT']}"


@contextmanager
def service_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m service <args>`; stopped with SIGTERM (SIGKILL after 60 s) on leaving."""
    process = subprocess.Popen([sys.executable, "-m", "service", *args], env=env, cwd=REPO)
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
