"""Session fixtures: real PostgreSQL and Kafka started once (by the project's own infra
scripts), and for this test run its own database, topics, consumer group and cache region,
so runs never see each other's data."""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, sync_playwright

from bench.common import create_database, drop_database
from service.config import Settings
from service.store.db import connect
from service.store.writer import OrderWriter
from tests.fix_browser import CHROMIUM, CHROMIUM_ARGS
from tests.fix_cluster import Cluster, running_cluster
from tests.fix_db import Conn
from tests.fix_processes import free_port, infra, service_process, service_url, wait_until_ready

# Fixtures of their own module, for the few tests that need them.
pytest_plugins = ["tests.fix_pg_cluster"]

RUN_ID = uuid.uuid4().hex[:8]
# Before anything imports prometheus_client: this run's metrics go to their own directory.
os.environ.setdefault("METRICS_DIR", f"/tmp/order-service-test-metrics-{RUN_ID}")


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
def chromium() -> Iterator[Browser]:
    """Headless Chromium for the page tests, one for the run."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def infrastructure() -> None:
    """PostgreSQL and Kafka up (a no-op when they already are)."""
    infra("postgres.sh", "up")
    infra("kafka.sh", "up")


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Cluster]:
    """Three KRaft brokers (infra/kafka-cluster.sh) on a LAN of their own, started for the first
    test that asks for them and stopped at the end of the run; every other test uses the single
    broker."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def settings(infrastructure: None, base_env: dict[str, str]) -> Iterator[Settings]:
    """Settings for this run, with its own migrated database (dropped at the end)."""
    settings = create_database(base_env, base_env["POSTGRES_DB"])
    yield settings
    drop_database(base_env, settings.postgres_db)


@pytest.fixture
def empty_database(settings: Settings, base_env: dict[str, str]) -> Iterator[Settings]:
    """Settings for a database of this test alone, created without the schema (dropped at the
    end): for tests that migrate, or need no schema, without touching the run's database."""
    name = f"{settings.postgres_db}_{uuid.uuid4().hex[:8]}"
    yield create_database(base_env, name, migrate=False)
    drop_database(base_env, name)


@pytest.fixture
def db(settings: Settings) -> Iterator[Conn]:
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def writer(settings: Settings) -> Iterator[OrderWriter]:
    """The service's own batch writer, on a connection of this test's."""
    order_writer = OrderWriter(connect(settings))
    yield order_writer
    order_writer.close()


@pytest.fixture(scope="session")
def api_url(settings: Settings, base_env: dict[str, str]) -> Iterator[str]:
    """`python -m service serve` (cache owner, warm-up, granian workers) for this run."""
    url = service_url(base_env)
    with service_process(base_env, "serve"):
        wait_until_ready(url)
        yield url


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
