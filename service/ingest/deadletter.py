"""The dead-letter topic: every refused message, unchanged, with headers saying why.

Each dead letter gets a number in the order it was sent. `acknowledged` is the number below
which Kafka has acknowledged every one, resending those it refused; the consumer holds a
batch's offsets until that covers every dead letter sent before the batch was stored
(`HeldOffsets`), so a refused message is never lost between leaving the order topic and
arriving here, and a dead-letter partition whose leader is gone holds back commits, not
storing. `flush` waits for all of them, before partitions are given up.
"""

import logging

from confluent_kafka import KafkaError, Message, Producer

from service.config import Settings
from service.ingest.kafka import producer_config

log = logging.getLogger(__name__)

FLUSH_STEP_S = 5.0

Headers = list[tuple[str, str | bytes | None]]
_Letter = tuple[bytes | None, bytes | None, Headers]


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.kafka_dlq_topic
        self._producer = Producer(producer_config(settings))
        self._sent = 0
        # Unacknowledged dead letters by number, lowest first (numbers only grow, and a
        # resend keeps its number).
        self._unacknowledged: dict[int, _Letter] = {}
        self._failed: list[int] = []

    @property
    def sent(self) -> int:
        """How many dead letters were sent so far: the number the next one gets."""
        return self._sent

    @property
    def acknowledged(self) -> int:
        """Every dead letter numbered below this one is acknowledged by Kafka."""
        return next(iter(self._unacknowledged), self._sent)

    def send(self, message: Message, kind: str, reason: str) -> None:
        """Queue `message` for the dead-letter topic with the error kind and reason."""
        headers: Headers = [
            ("error.kind", kind.encode()),
            ("error.message", reason.encode()[:4096]),
            ("original.topic", (message.topic() or "").encode()),
            ("original.partition", str(message.partition()).encode()),
            ("original.offset", str(message.offset()).encode()),
        ]
        number, self._sent = self._sent, self._sent + 1
        self._unacknowledged[number] = (message.key(), message.value(), headers)
        self._produce(number)

    def _produce(self, number: int) -> None:
        key, value, headers = self._unacknowledged[number]

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is None:
                del self._unacknowledged[number]
            else:
                log.warning("dead letter not delivered (%s); will resend", error)
                self._failed.append(number)

        self._producer.produce(self._topic, value, key, headers=headers, on_delivery=delivered)

    def poll(self) -> None:
        """Take Kafka's acknowledgements that have arrived, without waiting; resend refusals."""
        self._producer.poll(0)
        self._resend()

    def flush(self) -> None:
        """Block until every dead letter sent is acknowledged, resending failed ones."""
        while self._unacknowledged:
            if self._producer.flush(FLUSH_STEP_S) > 0:
                log.warning("waiting for Kafka to acknowledge dead letters")
            self._resend()

    def _resend(self) -> None:
        failed, self._failed = self._failed, []
        for number in failed:
            self._produce(number)
