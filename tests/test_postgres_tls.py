"""The service over TLS to the real PostgreSQL: the run's cluster is switched to `ssl = on`
with a certificate made by `openssl` (infra/postgres.sh tls-on), and back off afterwards."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from service.config import Settings, load_settings
from service.errors import OPERATOR_ERROR_EXIT, StoreMisconfigured
from service.store.db import connect
from service.store.migrate import discover
from tests.certs import Authority, make_authority, make_certificate
from tests.fix_db import Conn
from tests.fix_processes import infra, run_service

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def served_certificate(settings: Settings) -> str:
    """The certificate file the server uses now ('' when it serves no TLS). Debian's clusters
    serve a self-signed 'snakeoil' one from the start, so `ssl` alone does not show a switch."""
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('ssl', 'ssl_cert_file')"
        ).fetchall()
    values = {str(name): str(setting) for name, setting in rows}
    return values["ssl_cert_file"] if values["ssl"] == "on" else ""


@pytest.fixture(scope="module")
def authority(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    """The CA whose certificate the cluster serves while this module runs."""
    directory = tmp_path_factory.mktemp("postgres-tls")
    authority = make_authority(directory, "postgres-test-ca")
    server = make_certificate(authority, directory, "localhost")
    before = served_certificate(settings)
    infra("postgres.sh", "tls-on", str(server.cert), str(server.key))
    try:
        # The reload is asynchronous: wait until the server says it serves our certificate.
        wait_for_certificate(settings, lambda served: served.endswith("/tls/server.crt"))
        yield authority
    finally:
        infra("postgres.sh", "tls-off")
        wait_for_certificate(settings, lambda served: served == before)


def wait_for_certificate(
    settings: Settings, expected: Callable[[str], bool], seconds: float = 30.0
) -> None:
    deadline = time.monotonic() + seconds
    while not expected(served := served_certificate(settings)):
        if time.monotonic() > deadline:
            raise AssertionError(f"PostgreSQL still serves {served!r} after {seconds:.0f} s")
        time.sleep(0.1)


def uses_tls(conn: Conn) -> bool:
    row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    return row is not None and row[0] is True


def test_verify_full_connects_with_the_servers_ca(
    authority: Authority, base_env: dict[str, str], settings: Settings
) -> None:
    env = {
        **base_env,
        "POSTGRES_SSLMODE": "verify-full",
        "POSTGRES_SSLROOTCERT": str(authority.cert),
    }
    with connect(load_settings(env)) as conn:
        assert uses_tls(conn)
    result = run_service(env, "migrate", "version")
    latest = max(m.version for m in discover(Path(settings.migrations_dir)))
    assert (result.returncode, result.stdout.strip()) == (0, str(latest)), result.stderr


def test_a_url_with_its_own_sslmode_and_root_certificate_connects_over_tls(
    authority: Authority, settings: Settings
) -> None:
    url = (
        f"postgresql://{settings.postgres_user}:{settings.postgres_password}@localhost:"
        f"{settings.postgres_port}/{settings.postgres_db}"
        f"?sslmode=verify-full&sslrootcert={authority.cert}"
    )
    with connect(load_settings({"POSTGRES_URL": url})) as conn:
        assert uses_tls(conn)


def test_a_server_certificate_from_another_ca_is_refused_naming_the_setting(
    authority: Authority, base_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    stranger = make_authority(tmp_path, "another-ca")
    env = {
        **base_env,
        "POSTGRES_SSLMODE": "verify-full",
        "POSTGRES_SSLROOTCERT": str(stranger.cert),
    }
    with pytest.raises(StoreMisconfigured) as error:
        connect(load_settings(env))
    assert "certificate verify failed" in str(error.value)
    assert "POSTGRES_SSLROOTCERT" in str(error.value)
    result = run_service(env, "migrate", "version")
    assert result.returncode == OPERATOR_ERROR_EXIT
    assert "To fix: check POSTGRES_SSLROOTCERT" in result.stderr
