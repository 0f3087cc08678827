"""The Kafka boundary: client settings, topic creation, and Kafka errors as service errors.

Every client the service makes (consumer, dead-letter producer, admin client, demo producer)
gets its brokers, TLS and SASL settings from `client_config`, and the KAFKA_PROPERTY_*
passthrough last. `ensure_topics` runs first in every process that talks to Kafka (`replay`,
which must not create the topic, starts with `checked_admin` instead), and it
turns a refused password or an untrusted certificate into an error naming the setting, where
librdkafka by itself would retry forever.
"""

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from service.config import Settings
from service.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 15.0
METADATA_REFRESH_MS = 2000
# The dead-letter topic takes the original message plus headers, so it allows more than the
# broker's default 1 MB for a message that was refused for being too large.
_DLQ_MAX_MESSAGE_BYTES = "4194304"


_librdkafka_log = logging.getLogger("librdkafka")

# The settings behind librdkafka's properties, to name in an error about one of them.
_SETTING_OF_PROPERTY = {
    "ssl.ca.location": "KAFKA_SSL_CA_FILE",
    "ssl.certificate.location": "KAFKA_SSL_CERT_FILE",
    "ssl.key.location": "KAFKA_SSL_KEY_FILE",
}


def client_config(settings: Settings) -> dict[str, Any]:
    """Brokers, TLS and SASL: what every client shares (without the passthrough)."""
    security = settings.kafka_security
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_brokers,
        "security.protocol": security.protocol,
        # librdkafka's own lines through our handlers and format, not raw onto stderr.
        "logger": _librdkafka_log,
        # A partition's new leader is learnt from metadata. A broker that dies closes its
        # connections and a refresh follows at once, but one cut off by the network leaves
        # the client's request to it hanging until `socket.timeout.ms` (60 s), its partitions
        # fetched from it all along, though the cluster moved them seconds after the cut
        # (docs/reliability.md, a broker cut off). A refresh every few seconds finds them.
        "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
    }
    if security.protocol.startswith("SASL_"):
        config["sasl.mechanism"] = security.sasl_mechanism
        config["sasl.username"] = security.sasl_username
        config["sasl.password"] = security.sasl_password
    if security.ca_file:
        config["ssl.ca.location"] = security.ca_file
    if security.cert_file:
        config["ssl.certificate.location"] = security.cert_file
        config["ssl.key.location"] = security.key_file
    return config


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group.id": settings.kafka_group,
        # Offsets move only after the database commit (see consumer.py).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "statistics.interval.ms": 5000,
        # Long enough to ride out a database outage between two consume() calls.
        "max.poll.interval.ms": 600_000,
        # Heartbeats come from librdkafka's own thread, so a long batch or a database
        # outage does not count against it.
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "fetch.max.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 65536,
        **dict(settings.kafka_properties),
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": int(_DLQ_MAX_MESSAGE_BYTES),
        **dict(settings.kafka_properties),
    }


def admin_config(settings: Settings) -> dict[str, Any]:
    return {**client_config(settings), **dict(settings.kafka_properties)}


def _admin(settings: Settings, errors: list[KafkaError]) -> AdminClient:
    config = admin_config(settings)
    config["error_cb"] = errors.append
    try:
        return AdminClient(config)
    except KafkaException as exc:
        detail = str(exc.args[0])
        named = [name for key, name in _SETTING_OF_PROPERTY.items() if key in detail]
        where = (
            f"check {named[0]}"
            if named
            else "check the KAFKA_PROPERTY_* settings (property a.b is KAFKA_PROPERTY_A_B)"
        )
        raise ConfigError(f"The Kafka client refused its settings: {detail}; {where}.") from exc


def _refusal(settings: Settings, error: KafkaError) -> ConfigError | None:
    """The setting to blame when the broker refused us for good, or None for a plain outage."""
    security = settings.kafka_security
    brokers = settings.kafka_brokers
    if error.code() == KafkaError._AUTHENTICATION:
        return ConfigError(
            f"Kafka at {brokers} refused the SASL login of {security.sasl_username!r} "
            f"({security.sasl_mechanism}): {error.str()}. Check 'KAFKA_SASL_USERNAME', "
            "'KAFKA_SASL_PASSWORD' and 'KAFKA_SASL_MECHANISM'."
        )
    if error.code() == KafkaError._SSL:
        settings_to_check = "'KAFKA_SSL_CA_FILE' (the CA that signed the brokers' certificates)"
        if security.cert_file:
            settings_to_check += " and 'KAFKA_SSL_CERT_FILE'/'KAFKA_SSL_KEY_FILE'"
        return ConfigError(
            f"The TLS handshake with Kafka at {brokers} failed: {error.str()}. "
            f"Check {settings_to_check}, and that 'KAFKA_SECURITY_PROTOCOL' "
            f"({security.protocol}) is what the brokers' listener speaks."
        )
    return None


def _check_access(settings: Settings, admin: AdminClient, errors: list[KafkaError]) -> None:
    """Wait until the brokers answer; stop at once if they refuse our credentials."""
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        try:
            admin.list_topics(timeout=1.0)
        except KafkaException:
            admin.poll(0)  # serves error_cb, which collects why the brokers did not answer
        else:
            return
        for error in errors:
            refusal = _refusal(settings, error)
            if refusal is not None:
                raise refusal
        if time.monotonic() > deadline:
            last = f": {errors[-1].str()}" if errors else ""
            raise BrokerUnavailable(
                f"Kafka at {settings.kafka_brokers} did not answer within "
                f"{ADMIN_TIMEOUT_S:.0f} s{last}"
            )


def checked_admin(settings: Settings) -> AdminClient:
    """An admin client of brokers that have let us in (see `_check_access`)."""
    errors: list[KafkaError] = []
    admin = _admin(settings, errors)
    _check_access(settings, admin, errors)
    return admin


def ensure_topics(settings: Settings) -> None:
    """Check that Kafka lets us in, then create the order topic and its dead-letter topic if
    they do not exist yet, and warn about one that exists with weaker durability than set."""
    admin = checked_admin(settings)
    insync = {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}
    topics = [
        NewTopic(
            settings.kafka_topic,
            settings.kafka_partitions,
            settings.kafka_replication,
            config=insync,
        ),
        NewTopic(
            settings.kafka_dlq_topic,
            settings.kafka_partitions,
            settings.kafka_replication,
            config={**insync, "max.message.bytes": _DLQ_MAX_MESSAGE_BYTES},
        ),
    ]
    futures = admin.create_topics(topics, request_timeout=ADMIN_TIMEOUT_S)
    existing: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
            log.info("created topic %r", name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                existing.append(name)
                continue
            raise BrokerUnavailable(
                f"could not create topic {name!r} on {settings.kafka_brokers}: {error}"
            ) from exc
        except TimeoutError as exc:
            raise BrokerUnavailable(
                f"Kafka at {settings.kafka_brokers} did not answer within {ADMIN_TIMEOUT_S:.0f} s"
            ) from exc
    for name in existing:
        _warn_if_weaker(settings, admin, name)


def _warn_if_weaker(settings: Settings, admin: AdminClient, topic: str) -> None:
    """Log a warning when an existing topic has fewer replicas or a lower min.insync.replicas
    than the settings ask for. The topic is left as it is: changing it is the operator's call."""
    try:
        metadata = admin.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics[topic]
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = admin.describe_configs([resource], request_timeout=ADMIN_TIMEOUT_S)
        entries = configs[resource].result(timeout=ADMIN_TIMEOUT_S)
    except (KafkaException, TimeoutError) as exc:
        log.warning("could not read the settings of topic %r to compare them: %s", topic, exc)
        return
    replicas = min((len(p.replicas) for p in metadata.partitions.values()), default=0)
    insync = int(entries["min.insync.replicas"].value)
    if replicas < settings.kafka_replication:
        log.warning(
            "topic %r exists with replication factor %d, below KAFKA_REPLICATION=%d; "
            "it is used as it is (add replicas with kafka-reassign-partitions.sh)",
            topic,
            replicas,
            settings.kafka_replication,
        )
    if insync < settings.kafka_min_insync_replicas:
        log.warning(
            "topic %r exists with min.insync.replicas=%d, below KAFKA_MIN_INSYNC_REPLICAS=%d; "
            "it is used as it is (raise it with kafka-configs.sh --alter --add-config "
            "min.insync.replicas=%d)",
            topic,
            insync,
            settings.kafka_min_insync_replicas,
            settings.kafka_min_insync_replicas,
        )
