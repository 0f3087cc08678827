"""The service through PgBouncer (Debian's, infra/pgbouncer.sh) in session mode, the mode
docs/scale.md recommends: the consumer stores a stream, misses and /orders answer, and the
server sees the service's connections coming through PgBouncer. (Transaction mode is not
supported: the consumer's and the misses' prepared statements need PgBouncer 1.21+.)"""

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from service.config import Settings, load_settings
from service.ingest.kafka import ensure_topics
from service.model import encode_order
from tests.fix_db import Conn, assert_stored_exactly, store, stored_count
from tests.fix_kafka import produce
from tests.fix_load import uids_of, values_of
from tests.fix_processes import infra, service_process, service_url, wait_for, wait_until_ready
from tests.orders import random_orders

pytestmark = pytest.mark.integration

PGBOUNCER_PORT = os.environ.get("PGBOUNCER_PORT", "26432")


@pytest.fixture
def through_pgbouncer(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The service's environment with PostgreSQL reached through PgBouncer in session mode."""
    infra("pgbouncer.sh", "up", "session")
    try:
        yield {**service_env, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": PGBOUNCER_PORT}
    finally:
        infra("pgbouncer.sh", "down")


def pgbouncer_clients(settings: Settings) -> list[str]:
    """The databases of the clients PgBouncer holds now (its admin console's SHOW CLIENTS,
    which takes only the simple query protocol: psql, not psycopg)."""
    console = ["-h", "127.0.0.1", "-p", PGBOUNCER_PORT, "-U", settings.postgres_user]
    shown = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "|", *console, "-d", "pgbouncer", "-c", "SHOW CLIENTS"],
        env={**os.environ, "PGPASSWORD": settings.postgres_password},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("|")[2] for line in shown.splitlines() if line]


def test_the_consumer_and_the_api_work_through_pgbouncer_in_session_mode(
    through_pgbouncer: dict[str, str], settings: Settings, db: Conn
) -> None:
    env = through_pgbouncer
    streamed, late = random_orders(2_000, seed=301), random_orders(20, seed=302)
    ensure_topics(load_settings(env))
    produce(settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(streamed), uids_of(streamed))
    url = service_url(env)
    with service_process(env, "run"):
        wait_until_ready(url)
        wait_for(lambda: stored_count(db, uids_of(streamed)) == len(streamed), what="all stored")
        assert settings.postgres_db in pgbouncer_clients(settings)
        store(settings, late)  # not through the consumer: each is a miss
        for order in late:
            answer = httpx.get(f"{url}/order/{order.order_uid}", timeout=10)
            assert (answer.status_code, answer.content) == (200, encode_order(order))
        listed = httpx.get(f"{url}/orders", timeout=10)
        assert listed.status_code == 200
    assert_stored_exactly(db, streamed)
