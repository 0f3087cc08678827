"""A PostgreSQL primary and a synchronous standby under Patroni and etcd (infra/pg-cluster.sh),
started once per run for the high-availability tests only; the rest of the suite keeps the
single server. Patroni's REST API says which node leads."""

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.common import create_database
from service.config import Settings, load_settings
from tests.fix_processes import infra, wait_for

BASE_PORT = int(os.environ.get("PG_CLUSTER_BASE_PORT", "25470"))
NODES = (1, 2)
CLUSTER_NAME = os.environ.get("POSTGRES_CLUSTER", "orderservice")
CLUSTER_DIR = Path(f"/var/lib/postgresql/patroni-{CLUSTER_NAME}-ha-{BASE_PORT}")


@dataclass(frozen=True)
class PgCluster:
    """The two nodes: where they listen, who leads, and their postmasters."""

    env: dict[str, str]
    settings: Settings

    @staticmethod
    def port(node: int) -> int:
        return BASE_PORT + 1 + node

    @staticmethod
    def api(node: int) -> str:
        return f"http://127.0.0.1:{BASE_PORT + 3 + node}"

    def role(self, node: int) -> str | None:
        """Patroni's word for the node ('leader', 'sync_standby', 'replica'), None if down."""
        try:
            members = httpx.get(f"{self.api(NODES[0])}/cluster", timeout=2).json()["members"]
        except (httpx.HTTPError, ValueError, KeyError):
            members = httpx.get(f"{self.api(NODES[1])}/cluster", timeout=2).json()["members"]
        for member in members:
            if member["name"] == f"node{node}" and member["state"] in ("running", "streaming"):
                return str(member["role"])
        return None

    def leader(self) -> int | None:
        return next((node for node in NODES if self.role(node) == "leader"), None)

    def postmaster_pid(self, node: int) -> int:
        return int((CLUSTER_DIR / f"node{node}" / "postmaster.pid").read_text().split()[0])

    def kill_node(self, node: int) -> None:
        """The node lost at once: its Patroni, then its postmaster, SIGKILLed. (The
        postmaster alone is restarted in place by a Patroni that still holds the leader
        lock, as Patroni 3.0.2 did here even with primary_start_timeout 0.)"""
        postmaster = self.postmaster_pid(node)
        os.kill(int((CLUSTER_DIR / f"patroni{node}.pid").read_text()), signal.SIGKILL)
        os.kill(postmaster, signal.SIGKILL)

    @contextmanager
    def maintenance(self) -> Iterator[None]:
        """Patroni's maintenance mode for the block: outside it, a replica's Patroni resumes
        paused WAL replay on its next loop (it takes a pause for one PostgreSQL 14+ makes on
        a parameter change), so a test's pg_wal_replay_pause() would last about loop_wait."""
        self._set_pause(True)
        try:
            yield
        finally:
            self._set_pause(False)

    def _set_pause(self, pause: bool) -> None:
        httpx.patch(f"{self.api(NODES[0])}/config", json={"pause": pause}, timeout=5)
        wait_for(
            lambda: all(
                httpx.get(f"{self.api(node)}/patroni", timeout=2).json().get("pause", False)
                == pause
                for node in NODES
            ),
            30,
            f"Patroni's pause set to {pause} on every node",
        )

    def restart_missing(self) -> None:
        """Start again what is not running (a killed node rejoins, rewound if need be), and
        wait until there is a leader and a synchronous standby again."""
        infra("pg-cluster.sh", "up")
        wait_for(
            lambda: sorted(str(self.role(node)) for node in NODES) == ["leader", "sync_standby"],
            180,
            "a leader and a synchronous standby",
        )


@pytest.fixture(scope="session")
def pg_cluster(base_env: dict[str, str]) -> Iterator[PgCluster]:
    """The cluster up, this run's database created and migrated on it; stopped at the end."""
    ports = ",".join(str(PgCluster.port(node)) for node in NODES)
    hosts = ",".join("127.0.0.1" for _ in NODES)
    env = {**base_env, "POSTGRES_HOST": hosts, "POSTGRES_PORT": ports}
    cluster = PgCluster(env, load_settings(env))
    # `up` returns once there is a leader; the standby turns synchronous a loop or two later.
    cluster.restart_missing()
    leader = cluster.leader()
    assert leader is not None, "pg-cluster.sh up returned without a leader"
    # CREATE DATABASE on the leader itself: the admin connection asks for no session type.
    create_database({**env, "POSTGRES_PORT": str(cluster.port(leader))}, base_env["POSTGRES_DB"])
    try:
        yield cluster
    finally:
        infra("pg-cluster.sh", "down")
