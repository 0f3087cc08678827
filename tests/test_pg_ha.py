"""PostgreSQL with a primary and a synchronous standby under Patroni (tests/fix_pg_cluster.py):
the service's connections find the primary in the host list, whichever node leads."""

import pytest

from service.store.db import connect, connect_for_reads
from tests.fix_pg_cluster import NODES, PgCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_cluster_has_a_leader_and_a_synchronous_standby(pg_cluster: PgCluster) -> None:
    roles = sorted(str(pg_cluster.role(node)) for node in NODES)
    assert roles == ["leader", "sync_standby"]


def test_writers_reach_the_leader_through_the_host_list_whichever_node_it_is(
    pg_cluster: PgCluster,
) -> None:
    leader = pg_cluster.leader()
    assert leader is not None
    with connect(pg_cluster.settings) as conn:
        assert conn.info.port == pg_cluster.port(leader)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    with connect_for_reads(pg_cluster.settings) as conn:
        assert conn.execute("SELECT count(*) FROM order_documents").fetchone() is not None
