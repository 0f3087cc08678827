"""Operator mistakes are reported, not retried: a database without the schema, a wrong
password, a schema removed under a running API. Each names its cause and its fix."""

import subprocess
import sys
import uuid

import httpx
import pytest

from service.config import Settings, load_settings
from service.errors import OPERATOR_ERROR_EXIT, StoreMisconfigured
from service.store.db import connect
from tests.fix_processes import REPO, run_service, service_process, service_url, wait_until_ready

pytestmark = pytest.mark.integration


@pytest.fixture
def unmigrated_env(empty_database: Settings, service_env: dict[str, str]) -> dict[str, str]:
    """The environment of a service whose database exists but has no schema."""
    return {**service_env, "POSTGRES_DB": empty_database.postgres_db}


def migrate(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "service", "migrate", *args], env=env, check=True, cwd=REPO
    )


def test_a_consumer_without_the_schema_exits_at_once_saying_to_migrate(
    unmigrated_env: dict[str, str],
) -> None:
    result = run_service(unmigrated_env, "consume")
    assert result.returncode == OPERATOR_ERROR_EXIT
    assert "is at schema version 0 and this build needs" in result.stderr
    assert "./dev migrate-up" in result.stderr


def test_a_wrong_password_names_the_settings_to_check(settings: Settings) -> None:
    wrong = load_settings({"POSTGRES_PASSWORD": "not-the-password", "POSTGRES_DB": "postgres"})
    with pytest.raises(StoreMisconfigured, match="POSTGRES_USER and POSTGRES_PASSWORD"):
        connect(wrong)


def test_a_database_that_does_not_exist_names_postgres_db(settings: Settings) -> None:
    with pytest.raises(StoreMisconfigured, match="check POSTGRES_DB"):
        connect(load_settings({"POSTGRES_DB": f"missing_{uuid.uuid4().hex[:8]}"}))


def test_readyz_names_a_schema_removed_under_the_running_api(
    unmigrated_env: dict[str, str],
) -> None:
    migrate(unmigrated_env, "up")
    url = service_url(unmigrated_env)
    with service_process(unmigrated_env, "serve"):
        wait_until_ready(url)
        migrate(unmigrated_env, "down", "2")
        ready = httpx.get(f"{url}/readyz", timeout=30)
        miss = httpx.get(f"{url}/order/{uuid.uuid4().hex}", timeout=30)
    assert ready.status_code == 503
    assert "./dev migrate-up" in ready.json()["detail"]
    assert miss.status_code == 503
    assert "./dev migrate-up" in miss.json()["detail"]
