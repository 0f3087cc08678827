"""The real broker in the tests: producing (at once or paced over a while), reading a topic
back, sizing it, and the consumer group's assignment, lag and committed offsets."""

import threading
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from service.ingest.kafka import METADATA_REFRESH_MS

# Partitions of the scale tests' topics (test_scale), which `shared_by` expects all held.
PARTITIONS = 6


def produce(
    brokers: str, topic: str, values: Sequence[bytes], keys: Sequence[str | None] | None = None
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "linger.ms": 5,
            "message.max.bytes": 4_000_000,
            # Keeps each partition in the order produced: without it a retried request can
            # land after later ones (seen under load), and tests rely on that order.
            "enable.idempotence": True,
        }
    )
    failures: list[str] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(str(error))

    for index, value in enumerate(values):
        key = keys[index] if keys else None
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures, failures[:3]


def read_all(brokers: str, topic: str, expected: int, seconds: float = 60.0) -> list[Message]:
    """Read `expected` messages from the start of `topic` (fewer if the time runs out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + seconds
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def headers(message: Message) -> dict[str, str]:
    """A message's headers as text (the service sends them as UTF-8 bytes, in a list)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        key: value.decode() if isinstance(value, bytes) else value or "" for key, value in pairs
    }


def topic_size(brokers: str, topic: str) -> int:
    """How many messages `topic` holds: the sum of its partitions' high watermarks (the test
    topics are never compacted or trimmed, and nothing writes to them transactionally)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"sizer-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


class DeadLetters:
    """The values in the dead-letter topic, read whole each time they are asked for: a letter
    written twice (a batch retried) or still on its way must not pass for a missing one."""

    def __init__(self, brokers: str, topic: str) -> None:
        self._brokers = brokers
        self._topic = topic
        self.values: list[bytes | None] = []

    def cover(self, invalid: list[bytes]) -> bool:
        size = topic_size(self._brokers, self._topic)
        if size < len(invalid):
            return False
        self.values = [m.value() for m in read_all(self._brokers, self._topic, size)]
        return set(invalid) <= set(self.values)


class PacedProducer:
    """Produces `values` (keyed by `keys`) spread evenly over `seconds` from a thread, so a
    fault can be injected while messages keep arriving. Leaving the block waits until every
    message is acknowledged (the producer rides out a broker outage) and raises any failure."""

    def __init__(
        self, brokers: str, topic: str, values: list[bytes], keys: list[str], seconds: float
    ) -> None:
        # log_level 3: errors only; the broker being away is expected, not worth a warning.
        # Idempotent, as in `produce`: a request retried after a broker's loss must not land
        # after later ones (a later copy of an order would then come first) or twice.
        self._producer = Producer(
            {
                "bootstrap.servers": brokers,
                "linger.ms": 5,
                "log_level": 3,
                "enable.idempotence": True,
                # As the service's clients (service/ingest/kafka.py): a partition moved off a
                # broker cut off by the network is found in seconds, not after 60 s.
                "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            }
        )
        self._topic = topic
        self._messages = list(zip(values, keys, strict=True))
        self._seconds = seconds
        self._failures: list[str] = []
        self._error: BaseException | None = None
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PacedProducer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join(self._seconds + 180)
        assert not self._thread.is_alive(), "producer did not finish"
        if self._error is not None:
            raise self._error
        assert not self._failures, self._failures[:3]

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def _run(self) -> None:
        try:
            ticks = max(1, int(self._seconds * 10))
            step = -(-len(self._messages) // ticks)
            started = time.monotonic()
            for tick, start in enumerate(range(0, len(self._messages), step)):
                for value, key in self._messages[start : start + step]:
                    self._producer.produce(self._topic, value, key, on_delivery=self._delivered)
                    self.sent += 1
                self._producer.poll(0)
                time.sleep(max(0.0, started + (tick + 1) * 0.1 - time.monotonic()))
            assert self._producer.flush(170) == 0, "messages not acknowledged"
        except BaseException as exc:  # handed to the test thread in __exit__
            self._error = exc


def assignment(brokers: str, group: str) -> list[set[int]]:
    """The partitions of each member of `group`, as the group coordinator sees them now."""
    admin = AdminClient({"bootstrap.servers": brokers})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [{tp.partition for tp in m.assignment.topic_partitions} for m in description.members]


def shared_by(brokers: str, group: str, members: int) -> bool:
    """Whether `members` consumers hold every partition between them, each at least one."""
    held = assignment(brokers, group)
    return (
        len(held) == members
        and all(held)
        and sorted(p for partitions in held for p in partitions) == list(range(PARTITIONS))
    )


# What a group's coordinator answers while it moves or loads (a new group's first request on
# a busy broker met NOT_COORDINATOR in CI): asked again, not a failure.
_COORDINATOR_BUSY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}
COORDINATOR_PATIENCE_S = 30.0


def _committed_offsets(consumer: Consumer, topic: str) -> list[TopicPartition]:
    """The committed offset of every partition of `topic`, asking again while the group's
    coordinator is busy."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    asked = [TopicPartition(topic, p) for p in partitions]
    deadline = time.monotonic() + COORDINATOR_PATIENCE_S
    while True:
        try:
            return consumer.committed(asked, timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def unread(brokers: str, group: str, topic: str) -> int:
    """Messages between the group's committed offsets and the end of each partition (all of
    them where it committed none)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        committed = _committed_offsets(consumer, topic)
        return sum(
            consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0)
            for tp in committed
        )
    finally:
        consumer.close()


def committed(brokers: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset on each partition of `topic` (None where it has none)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group})
    try:
        answer = _committed_offsets(consumer, topic)
        return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in answer}
    finally:
        consumer.close()


def topics(brokers: str) -> set[str]:
    """The names of every topic on the brokers."""
    return set(AdminClient({"bootstrap.servers": brokers}).list_topics(timeout=10).topics)
