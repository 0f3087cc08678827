"""Several PostgreSQL hosts in one setting, against the real local server: libpq tries them in
turn, and a server that no longer takes writes is "the primary moved" (retried), never an
operator error and never a rejected order."""

import dataclasses

import psycopg
import pytest

from service.config import Settings
from service.errors import StoreUnavailable
from service.model import encode_order
from service.store.db import connect
from service.store.writer import OrderWriter
from tests.fix_db import Conn, scalar
from tests.fix_processes import free_port
from tests.orders import random_orders

pytestmark = pytest.mark.integration


def test_a_host_list_whose_first_entry_is_a_closed_port_still_connects(
    settings: Settings,
) -> None:
    listed = dataclasses.replace(
        settings,
        postgres_host="127.0.0.1,127.0.0.1",
        postgres_port=f"{free_port()},{settings.postgres_port}",
    )
    with connect(listed) as conn:
        assert conn.info.port == int(settings.postgres_port)


@pytest.fixture
def read_only(empty_database: Settings) -> Settings:
    """A database whose sessions start read-only, as on a standby or a demoted primary."""
    with psycopg.connect(empty_database.postgres_conninfo, autocommit=True) as conn:
        conn.execute(
            f'ALTER DATABASE "{empty_database.postgres_db}" SET default_transaction_read_only = on'
        )
    return empty_database


def test_a_writer_passes_over_a_server_that_takes_no_writes_and_retries(
    read_only: Settings,
) -> None:
    with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
        connect(read_only)


def test_a_server_turned_read_only_under_the_writer_is_retried_not_rejected(
    settings: Settings, db: Conn
) -> None:
    orders = random_orders(3, seed=25)
    conn = connect(settings)
    writer = OrderWriter(conn)
    try:
        # What a demoted primary does to a session: every transaction from now on is read-only.
        conn.execute("SET default_transaction_read_only = on")
        conn.commit()
        tagged = [((order, encode_order(order)), order.order_uid) for order in orders]
        with pytest.raises(StoreUnavailable, match="read-only here"):
            writer.write_isolating(tagged)
    finally:
        writer.close()
    uids = [order.order_uid for order in orders]
    assert scalar(db, "SELECT count(*) FROM orders WHERE order_uid = ANY(%s)", uids) == 0
