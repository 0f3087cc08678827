"""PostgreSQL with a primary and a synchronous standby under Patroni (tests/fix_pg_cluster.py):
the service's connections find the primary in the host list, whichever node leads."""

import time

import httpx
import psycopg
import pytest

from service.config import load_settings
from service.model import encode_order
from service.store.db import connect, connect_for_reads
from tests.fix_db import Conn, assert_stored_exactly, store, stored_count
from tests.fix_kafka import PacedProducer, produce, topic_size
from tests.fix_load import Cached, answered_404, cached_orders, report, uids_of, unknown, values_of
from tests.fix_pg_cluster import CLUSTER_DIR, NODES, PgCluster
from tests.fix_processes import service_process, service_url, wait_for, wait_until_ready
from tests.http_load import HttpLoad, statuses
from tests.orders import random_orders

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


def _stored(cluster: PgCluster, uids: list[str]) -> int:
    """Orders of `uids` on the primary, found afresh through the host list."""
    try:
        with psycopg.connect(cluster.settings.postgres_primary_conninfo, connect_timeout=2) as db:
            return stored_count(db, uids)
    except psycopg.OperationalError:
        return -1


def _failover(cluster: PgCluster, env: dict[str, str], seed: int) -> dict[str, object]:
    """SIGKILL the leader's node (Patroni and postmaster) under mixed load (valid orders, invalid messages, hits,
    misses); return what the test measured, having asserted nothing was lost."""
    url = service_url(env)
    first, streamed = random_orders(500, seed=seed), random_orders(12_000, seed=seed + 1)
    uids = uids_of(streamed)
    invalid = [b"not json"] * 20
    leader = cluster.leader()
    assert leader is not None
    with service_process(env, "run") as service:
        wait_until_ready(url)
        produce(cluster.settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(first))
        wait_for(lambda: _stored(cluster, uids_of(first)) == len(first), what="first stored")
        hits = Cached(cached_orders(url, first[:100]))
        values = values_of(streamed) + invalid
        keys = uids + [f"invalid-{i}" for i in range(len(invalid))]
        with (
            HttpLoad(url, hits, threads=2) as hit_load,
            HttpLoad(url, unknown, threads=1) as miss_load,
            PacedProducer(
                cluster.settings.kafka_brokers, env["KAFKA_TOPIC"], values, keys, seconds=6
            ),
        ):
            wait_for(lambda: _stored(cluster, uids) > 1000, what="ingest under way")
            at_kill = _stored(cluster, uids)
            killed_at = time.monotonic()
            cluster.kill_node(leader)
            wait_for(lambda: cluster.leader() not in (None, leader), 120, "a new leader")
            promoted_at = time.monotonic()
            wait_for(lambda: _stored(cluster, uids) > at_kill, 120, "a store on the new primary")
            first_store_at = time.monotonic()
            wait_for(lambda: _stored(cluster, uids) == len(streamed), 180, "all stored")
            wait_for(lambda: answered_404(miss_load, first_store_at) >= 10, 60, "misses 404")
        assert service.poll() is None, "the service died"
    with psycopg.connect(cluster.settings.postgres_primary_conninfo) as db:
        assert_stored_exactly(db, first + streamed)
    dead_lettered = topic_size(cluster.settings.kafka_brokers, env["KAFKA_DLQ_TOPIC"])
    assert dead_lettered == len(invalid), "a valid order was dead-lettered"
    assert statuses(hit_load.outcomes()) == {200: hit_load.count()}, "a hit failed"
    misses = miss_load.outcomes()
    failed = [o for o in misses if o.status != 404]
    assert {o.status for o in failed} <= {503}
    assert all(killed_at <= o.started <= first_store_at + 30 for o in failed), "503 outside"
    window = (failed[-1].ended - failed[0].started) if failed else 0.0
    return {
        "kill_to_leader_s": round(promoted_at - killed_at, 1),
        "kill_to_first_store_s": round(first_store_at - killed_at, 1),
        "misses_503_window_s": round(window, 1),
        "misses_503": len(failed),
        "orders": len(first) + len(streamed),
        "lost": len(streamed) - _stored(cluster, uids),
        "dead_lettered_valid": dead_lettered - len(invalid),
        "hits_200": hit_load.count(),
    }


def test_a_failover_and_a_failback_lose_no_committed_order(
    pg_cluster: PgCluster, service_env: dict[str, str]
) -> None:
    env = {
        **service_env,
        "POSTGRES_HOST": pg_cluster.env["POSTGRES_HOST"],
        "POSTGRES_PORT": pg_cluster.env["POSTGRES_PORT"],
        "INGEST_BATCH_SIZE": "500",
    }
    report("pg_failover", **_failover(pg_cluster, env, seed=251))
    # The old primary rejoins as a standby (pg_rewind) and becomes synchronous again.
    pg_cluster.restart_missing()
    name = f"{env['KAFKA_TOPIC']}-back"
    back = {**env, "KAFKA_TOPIC": name, "KAFKA_GROUP": name, "KAFKA_DLQ_TOPIC": f"{name}.dlq"}
    report("pg_failback", **_failover(pg_cluster, back, seed=261))
    pg_cluster.restart_missing()


def _superuser(cluster: PgCluster, node: int) -> Conn:
    return psycopg.connect(
        host=str(CLUSTER_DIR), port=cluster.port(node), user="postgres", autocommit=True
    )


def test_an_order_stored_while_the_replica_replays_nothing_is_found_on_the_primary(
    pg_cluster: PgCluster, service_env: dict[str, str]
) -> None:
    pg_cluster.restart_missing()
    leader = pg_cluster.leader()
    assert leader is not None
    standby = next(node for node in NODES if node != leader)
    s = pg_cluster.settings
    env = {
        **service_env,
        "POSTGRES_HOST": pg_cluster.env["POSTGRES_HOST"],
        "POSTGRES_PORT": pg_cluster.env["POSTGRES_PORT"],
        "POSTGRES_READ_URL": f"postgresql://{s.postgres_user}:{s.postgres_password}@127.0.0.1:"
        f"{pg_cluster.port(standby)}/{s.postgres_db}",
    }
    url = service_url(env)
    order = random_orders(1, seed=271)[0]
    with (
        service_process(env, "serve"),
        pg_cluster.maintenance(),
        _superuser(pg_cluster, standby) as replica,
    ):
        wait_until_ready(url)
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            wait_for(
                lambda: (
                    replica.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
                    == ("paused",)
                ),
                what="replay paused",
            )
            store(pg_cluster.settings, [order])
            with psycopg.connect(load_settings(env).postgres_read_conninfo) as read:
                assert stored_count(read, [order.order_uid]) == 0, "the replica has it already"
            answer = httpx.get(f"{url}/order/{order.order_uid}", timeout=10)
            ready = httpx.get(f"{url}/readyz", timeout=10).json()
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    assert answer.status_code == 200
    assert answer.content == encode_order(order)
    assert ready["replica"]["standby"] is True
    assert ready["replica"]["replay_paused"] is True
    report(
        "pg_replica_paused",
        status=answer.status_code,
        replay_lag_bytes=ready["replica"]["replay_lag_bytes"],
    )
