from pathlib import Path

import psycopg
import pytest

from service.config import Settings
from service.store import migrate

pytestmark = pytest.mark.integration


def tables(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return {str(name) for (name,) in rows}


def test_migrations_go_up_down_and_up_again_on_the_real_server(
    settings: Settings, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    directory = Path(settings.migrations_dir)
    with psycopg.connect(settings.postgres_conninfo) as conn:
        assert migrate.current_version(conn) == 1
        assert {"orders", "deliveries", "payments", "items"} <= tables(conn)

        assert migrate.down(conn, directory, 1) == [1]
        assert migrate.current_version(conn) == 0
        assert tables(conn) == {"schema_migrations"}

        assert migrate.up(conn, directory) == [1]
        assert migrate.up(conn, directory) == []
        assert migrate.current_version(conn) == 1
        assert {"orders", "deliveries", "payments", "items"} <= tables(conn)


def test_a_migration_without_its_down_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.up.sql").write_text("SELECT 1")
    with pytest.raises(Exception, match="lacks an up or down file"):
        migrate.discover(tmp_path)
