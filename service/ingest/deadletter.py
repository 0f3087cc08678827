"""The dead-letter topic: every refused message, unchanged, with headers saying why.

Offsets are committed only after `flush` returns, so a refused message is never lost between
leaving the order topic and arriving here.
"""

import logging

from confluent_kafka import KafkaError, Message, Producer

from service.config import Settings
from service.ingest.kafka import producer_config

log = logging.getLogger(__name__)

FLUSH_STEP_S = 5.0

Headers = list[tuple[str, str | bytes | None]]


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.kafka_dlq_topic
        self._producer = Producer(producer_config(settings))
        self._failed: list[tuple[bytes | None, bytes | None, Headers]] = []

    def send(self, message: Message, kind: str, reason: str) -> None:
        """Queue `message` for the dead-letter topic with the error kind and reason."""
        headers: Headers = [
            ("error.kind", kind.encode()),
            ("error.message", reason.encode()[:4096]),
            ("original.topic", (message.topic() or "").encode()),
            ("original.partition", str(message.partition()).encode()),
            ("original.offset", str(message.offset()).encode()),
        ]
        self._produce(message.key(), message.value(), headers)

    def _produce(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                log.warning("dead letter not delivered (%s); will resend", error)
                self._failed.append((key, value, headers))

        self._producer.produce(self._topic, value, key, headers=headers, on_delivery=delivered)

    def flush(self) -> None:
        """Block until every queued dead letter is acknowledged, resending failed ones."""
        while True:
            while self._producer.flush(FLUSH_STEP_S) > 0:
                log.warning("waiting for Kafka to acknowledge dead letters")
            if not self._failed:
                return
            failed, self._failed = self._failed, []
            for key, value, headers in failed:
                self._produce(key, value, headers)
