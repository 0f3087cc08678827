"""The three-broker KRaft cluster of the replicated-cluster tests (infra/kafka-cluster.sh):
started once per run by the `kafka_cluster` session fixture, only for the tests that ask for
it, each node a host of its own on a private LAN (tests/netns.py), so that a network fault can
cut one off; with ways to kill, stop and restart one node and to find who leads what."""

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.fix_processes import REPO, wait_for
from tests.netns import Host, Lan, lan

SCRIPT = REPO / "infra" / "kafka-cluster.sh"
STATE = Path(os.environ.get("ORDERS_STATE_DIR", REPO / ".local")) / "kafka-cluster"
NODES = (1, 2, 3)


def _script(hosts: list[Host], *args: str) -> str:
    # stdout is the answer (the broker list); what the script says goes to the test's stderr.
    env = {
        **os.environ,
        "KAFKA_CLUSTER_HOSTS": ",".join(host.address for host in hosts),
        "KAFKA_CLUSTER_NETNS": ",".join(host.name for host in hosts),
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=300,
        env=env,
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Cluster:
    """The running cluster: its bootstrap list, the LAN it is on, and its nodes by id (1-3),
    node N on `hosts[N - 1]`."""

    brokers: str
    lan: Lan
    hosts: list[Host]

    def host(self, node: int) -> Host:
        return self.hosts[node - 1]

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.brokers, "log_level": 3})

    def kill(self, node: int) -> float:
        """SIGKILL node `node`; returns the moment it was dead."""
        _script(self.hosts, "kill", str(node))
        return time.monotonic()

    def start(self, node: int) -> None:
        """Start node `node` again and wait until it takes client connections."""
        _script(self.hosts, "start", str(node))

    def up(self) -> None:
        """Every node running (those already running are left alone), all of them brokers."""
        _script(self.hosts, "up")
        self.wait_for_brokers(len(NODES))

    def wait_for_brokers(self, count: int, seconds: float = 120.0) -> None:
        wait_for(lambda: self._broker_count() == count, seconds, f"{count} brokers in the cluster")

    def _broker_count(self) -> int:
        """The brokers the cluster's metadata lists now; 0 while none answers."""
        try:
            return len(self.admin().list_topics(timeout=5).brokers)
        except KafkaException:
            return 0

    def leaders(self, topic: str) -> Counter[int]:
        """How many partitions of `topic` each node leads."""
        partitions = self.admin().list_topics(topic, timeout=10).topics[topic].partitions
        return Counter(p.leader for p in partitions.values())

    def in_sync(self, topic: str) -> bool:
        """Whether every partition of `topic` has all its replicas in sync."""
        partitions = self.admin().list_topics(topic, timeout=10).topics[topic].partitions
        return all(len(p.isrs) == len(p.replicas) for p in partitions.values())

    def controller(self) -> int:
        """The node the KRaft quorum has as its leader (the active controller), as the first
        node that has a quorum-state file says."""
        for node in NODES:
            state = STATE / f"node{node}" / "data" / "__cluster_metadata-0" / "quorum-state"
            with suppress(OSError):
                return int(json.loads(state.read_text())["leaderId"])
        raise AssertionError(f"no node has a quorum-state file under {STATE}")

    def without(self, node: int, topic: str) -> bool:
        """Whether no partition of `topic` has `node` as leader or in its ISR any more, as a
        fresh client of the other nodes reads the metadata (one of node `node`'s connections
        may hang while it is cut off)."""
        others = ",".join(b for i, b in enumerate(self.brokers.split(","), 1) if i != node)
        admin = AdminClient({"bootstrap.servers": others, "log_level": 0})
        try:
            partitions = admin.list_topics(topic, timeout=2).topics[topic].partitions
        except KafkaException:
            return False
        return all(p.leader != node and node not in p.isrs for p in partitions.values())

    def coordinator(self, group: str) -> int:
        """The node coordinating consumer group `group`."""
        admin = self.admin()
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        return int(description.coordinator.id)


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A LAN with three hosts, the three nodes on it (fresh storage), all brokers; stopped,
    its data deleted and the LAN removed on leaving."""
    with lan() as network, ExitStack() as stack:
        hosts = [network.join(stack, f"kafka{node}") for node in NODES]
        _script(hosts, "wipe")
        stack.callback(_script, hosts, "wipe")
        _script(hosts, "up")
        cluster = Cluster(_script(hosts, "brokers"), network, hosts)
        cluster.wait_for_brokers(len(NODES))
        yield cluster
