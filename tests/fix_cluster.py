"""The three-broker KRaft cluster of the replicated-cluster tests (infra/kafka-cluster.sh):
started once per run by the `kafka_cluster` session fixture, only for the tests that ask for
it, with ways to kill, stop and restart one node and to find who leads what."""

import subprocess
import time
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.fix_processes import REPO, wait_for

SCRIPT = REPO / "infra" / "kafka-cluster.sh"
NODES = (1, 2, 3)


def _script(*args: str) -> str:
    # stdout is the answer (the broker list); what the script says goes to the test's stderr.
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], check=True, stdout=subprocess.PIPE, text=True, timeout=300
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Cluster:
    """The running cluster: its bootstrap list, and its nodes by id (1-3)."""

    brokers: str

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.brokers, "log_level": 3})

    def kill(self, node: int) -> float:
        """SIGKILL node `node`; returns the moment it was dead."""
        _script("kill", str(node))
        return time.monotonic()

    def start(self, node: int) -> None:
        """Start node `node` again and wait until it takes client connections."""
        _script("start", str(node))

    def up(self) -> None:
        """Every node running (those already running are left alone), all of them brokers."""
        _script("up")
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

    def coordinator(self, group: str) -> int:
        """The node coordinating consumer group `group`."""
        admin = self.admin()
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        return int(description.coordinator.id)


def start_cluster() -> Cluster:
    """Bring the three nodes up (idempotent) and wait until all three are brokers."""
    _script("up")
    cluster = Cluster(_script("brokers"))
    cluster.wait_for_brokers(len(NODES))
    return cluster


def stop_cluster() -> None:
    _script("down")
