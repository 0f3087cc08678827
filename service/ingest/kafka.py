"""The Kafka boundary: client settings, topic creation, and Kafka errors as service errors."""

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from service.config import Settings
from service.errors import BrokerUnavailable

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 15.0
# The dead-letter topic takes the original message plus headers, so it allows more than the
# broker's default 1 MB for a message that was refused for being too large.
_DLQ_MAX_MESSAGE_BYTES = "4194304"


# A killed consumer's partitions go to the rest of the group after 10 s rather than
# librdkafka's default 45 s. Heartbeats come from librdkafka's own thread, so a long batch or a
# database outage does not count against it.
SESSION_TIMEOUT_MS = 10_000


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_brokers,
        "group.id": settings.kafka_group,
        # Offsets move only after the database commit (see consumer.py).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "statistics.interval.ms": 5000,
        # Long enough to ride out a database outage between two consume() calls.
        "max.poll.interval.ms": 600_000,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "fetch.max.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 65536,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_brokers,
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": int(_DLQ_MAX_MESSAGE_BYTES),
    }


def ensure_topics(settings: Settings) -> None:
    """Create the order topic and its dead-letter topic if they do not exist yet."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    topics = [
        NewTopic(settings.kafka_topic, settings.kafka_partitions, settings.kafka_replication),
        NewTopic(
            settings.kafka_dlq_topic,
            settings.kafka_partitions,
            settings.kafka_replication,
            config={"max.message.bytes": _DLQ_MAX_MESSAGE_BYTES},
        ),
    ]
    futures = admin.create_topics(topics, request_timeout=ADMIN_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
            log.info("created topic %r", name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerUnavailable(
                f"could not create topic {name!r} on {settings.kafka_brokers}: {error}"
            ) from exc
        except TimeoutError as exc:
            raise BrokerUnavailable(
                f"Kafka at {settings.kafka_brokers} did not answer within {ADMIN_TIMEOUT_S:.0f} s"
            ) from exc
