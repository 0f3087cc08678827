"""Reading the dead-letter topic: every dead letter in a time range, with what its headers say.

The topic is read by assignment, never through a consumer group, so reading commits nothing
and joins nothing: any number of operators can look while the consumers run. What is read is
the topic as it was when reading began (each partition up to its end at that moment).

A dead letter is identified by its origin, the order topic's partition and offset in its
`original.*` headers: a batch redelivered after a crash dead-letters the same message again,
and `distinct` keeps the first copy of each origin.
"""

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from service.config import Settings
from service.errors import BrokerUnavailable, ReplayRefused
from service.ingest.kafka import ADMIN_TIMEOUT_S, checked_admin, client_config

CONSUME_STEP_S = 1.0
# How long the topic may stay silent before its remaining messages count as unreachable.
READ_PATIENCE_S = 60.0
BATCH = 500


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the refused message was read: the dead letter's identity."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # the dead-letter topic
    partition: int
    offset: int
    at: datetime  # when it was dead-lettered (the message's timestamp)
    kind: str
    reason: str
    origin: Origin
    key: bytes | None
    value: bytes

    @property
    def identity(self) -> Origin:
        """Its origin; its own place in the dead-letter topic if its headers name none (a
        message some other producer put there)."""
        if self.origin.offset >= 0 and self.origin.partition >= 0 and self.origin.topic:
            return self.origin
        return Origin(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to read: `kind` None for all; times inclusive of since, not until."""

    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def takes(self, letter: DeadLetter) -> bool:
        return (
            (self.kind is None or letter.kind == self.kind)
            and (self.since is None or letter.at >= self.since)
            and (self.until is None or letter.at < self.until)
        )


def _header_text(message: Message) -> dict[str, str]:
    pairs: list[tuple[str, bytes | None]] = message.headers() or []  # type: ignore[assignment]
    return {name: (value or b"").decode(errors="replace") for name, value in pairs}


def _integer(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return -1


def dead_letter(message: Message) -> DeadLetter:
    """The dead letter a message of the topic is; headers it lacks read as empty or -1."""
    headers = _header_text(message)
    millis = message.timestamp()[1]
    return DeadLetter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        at=datetime.fromtimestamp(millis / 1000, UTC),
        kind=headers.get("error.kind", ""),
        reason=headers.get("error.message", ""),
        origin=Origin(
            headers.get("original.topic", ""),
            _integer(headers.get("original.partition")),
            _integer(headers.get("original.offset")),
        ),
        key=message.key(),
        value=message.value() or b"",
    )


class DeadLetterTopic:
    """The dead-letter topic of `settings`, read from `since` to its end as of now."""

    def __init__(self, settings: Settings, since: datetime | None = None) -> None:
        self._settings = settings
        self.topic = settings.kafka_dlq_topic
        partitions = self._partitions()
        self._consumer = Consumer(
            {
                **client_config(settings),
                # Required by librdkafka, never joined: the partitions are assigned directly.
                "group.id": f"dlq-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                **dict(settings.kafka_properties),
            }
        )
        self._ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition, start in self._starts(partitions, since).items():
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=ADMIN_TIMEOUT_S
            )
            if start < high:
                self._ends[partition] = high
                starts.append(TopicPartition(self.topic, partition, start))
        self.expected = sum(self._ends[tp.partition] - tp.offset for tp in starts)
        self._consumer.assign(starts)

    def _partitions(self) -> list[int]:
        # All topics, not this one by name: asking for a missing topic may create it.
        topics = checked_admin(self._settings).list_topics(timeout=ADMIN_TIMEOUT_S).topics
        topic = topics.get(self.topic)
        if topic is None:
            raise ReplayRefused(
                f"Kafka at {self._settings.kafka_brokers} has no topic {self.topic!r}, the "
                "dead-letter topic the consumer creates at its first start. Check "
                "'KAFKA_DLQ_TOPIC' (default: the order topic's name + '.dlq')."
            )
        return sorted(topic.partitions)

    def _starts(self, partitions: list[int], since: datetime | None) -> dict[int, int]:
        if since is None:
            return {partition: 0 for partition in partitions}
        millis = max(0, int(since.timestamp() * 1000))
        asked = [TopicPartition(self.topic, p, millis) for p in partitions]
        found = self._consumer.offsets_for_times(asked, timeout=ADMIN_TIMEOUT_S)
        # -1: nothing at or after `since` on that partition.
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def __iter__(self) -> Iterator[Message]:
        """Every message from the starts to the ends, in batches, partitions interleaved."""
        silent_since: float | None = None
        while self._ends:
            messages = self._consumer.consume(BATCH, CONSUME_STEP_S)
            if not messages:
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > READ_PATIENCE_S:
                    raise BrokerUnavailable(
                        f"Kafka at {self._settings.kafka_brokers} stopped sending the "
                        f"dead-letter topic {self.topic!r} with partitions "
                        f"{sorted(self._ends)} unread for {READ_PATIENCE_S:.0f} s"
                    )
                continue
            silent_since = None
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise BrokerUnavailable(f"reading {self.topic!r}: {error}")
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                end = self._ends.get(partition)
                if end is None or offset >= end:
                    continue
                yield message
                if offset + 1 >= end:
                    del self._ends[partition]

    def close(self) -> None:
        self._consumer.close()


def distinct(letters: Iterable[DeadLetter]) -> Iterator[DeadLetter]:
    """The first dead letter of each identity (origin)."""
    seen: set[Origin] = set()
    for letter in letters:
        if letter.identity not in seen:
            seen.add(letter.identity)
            yield letter
