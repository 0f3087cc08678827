from pathlib import Path

import psycopg
import pytest

from bench.common import write_orders
from service.config import Settings
from service.model import decode_order
from service.store import migrate
from service.store.db import connect
from service.store.writer import OrderWriter
from tests.fix_db import Conn, stored_body
from tests.orders import random_orders

pytestmark = pytest.mark.integration

LATEST = 3
DOCUMENTS = 2  # the migration that builds order_documents
ALL_TABLES = {"orders", "deliveries", "payments", "items", "order_documents"}


def tables(conn: Conn) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return {str(name) for (name,) in rows}


def test_migrations_go_up_down_and_up_again_on_the_real_server(
    empty_database: Settings,
) -> None:
    directory = Path(empty_database.migrations_dir)
    with psycopg.connect(empty_database.postgres_conninfo) as conn:
        assert migrate.current_version(conn) == 0
        assert migrate.up(conn, directory) == list(range(1, LATEST + 1))
        assert tables(conn) >= ALL_TABLES

        assert migrate.down(conn, directory, LATEST) == list(range(LATEST, 0, -1))
        assert migrate.current_version(conn) == 0
        assert tables(conn) == {"schema_migrations"}

        assert migrate.up(conn, directory) == list(range(1, LATEST + 1))
        assert migrate.up(conn, directory) == []
        assert migrate.current_version(conn) == LATEST
        assert tables(conn) >= ALL_TABLES


def test_the_documents_migration_builds_a_body_for_every_order_already_stored(
    empty_database: Settings,
) -> None:
    directory = Path(empty_database.migrations_dir)
    orders = random_orders(20, seed=2)
    with psycopg.connect(empty_database.postgres_conninfo, autocommit=True) as conn:
        migrate.up(conn, directory)
        writer = OrderWriter(connect(empty_database))
        try:
            write_orders(writer, orders)
        finally:
            writer.close()
        back = LATEST - DOCUMENTS + 1
        assert migrate.down(conn, directory, back) == list(range(LATEST, DOCUMENTS - 1, -1))
        assert migrate.up(conn, directory) == list(range(DOCUMENTS, LATEST + 1))
        for order in orders:
            body = stored_body(conn, order.order_uid)
            assert body is not None
            decoded = decode_order(body)
            assert isinstance(decoded, tuple)
            assert decoded[0] == order


def test_a_migration_without_its_down_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.up.sql").write_text("SELECT 1")
    with pytest.raises(Exception, match="lacks an up or down file"):
        migrate.discover(tmp_path)
