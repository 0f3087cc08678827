"""`python -m service replay --since T`: the consumer group's offsets moved back (or forward) to
the first message at or after T on every partition of the order topic, so the consumers read
again from there.

Re-reading is harmless: the writer keeps the first copy of an order (ON CONFLICT DO NOTHING),
so what is still stored stays as it is and what is missing (a database restored from a backup)
is stored again. Offsets are moved only while the group has no members: a running consumer
would overwrite them with its next commit. Kafka checks that as well, atomically, since the
admin client's offset change is refused for a group with members; describing the group first
lets the refusal name them. A partition without a message at or after T goes to its end.
"""

from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConsumerGroupDescription,
    OffsetSpec,
)

from service.config import Settings
from service.errors import BrokerUnavailable, ReplayRefused
from service.ingest.kafka import ADMIN_TIMEOUT_S, checked_admin

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's committed offset before (None: nothing committed) and after."""

    partition: int
    old: int | None
    new: int


def replay(settings: Settings, since: datetime, dry_run: bool) -> list[Move]:
    """Move the group's offsets to the first message at or after `since` (only work them out
    if `dry_run`); refused while the group has members or when the topic does not exist."""
    admin = checked_admin(settings)
    partitions = _partitions(settings, admin)
    _require_no_members(settings, admin)
    committed = _committed(settings, admin, partitions)
    targets = _targets(settings, admin, partitions, since)
    moves = [Move(p, committed.get(p), targets[p]) for p in partitions]
    if not dry_run:
        _alter(settings, admin, moves)
    return moves


def _partitions(settings: Settings, admin: AdminClient) -> list[int]:
    # All topics rather than this one by name: asking for a missing topic by name may create
    # it where the brokers auto-create topics.
    topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
    topic = topics.get(settings.kafka_topic)
    if topic is None:
        raise ReplayRefused(
            f"Kafka at {settings.kafka_brokers} has no topic {settings.kafka_topic!r}, so there "
            "is nothing to replay. Check 'KAFKA_TOPIC'."
        )
    return sorted(topic.partitions)


def _require_no_members(settings: Settings, admin: AdminClient) -> None:
    group = settings.kafka_group
    described = admin.describe_consumer_groups([group], request_timeout=ADMIN_TIMEOUT_S)
    description: ConsumerGroupDescription = _result(settings, described[group])
    if description.members:
        members = "; ".join(
            f"member {m.member_id} (client {m.client_id} on {m.host})" for m in description.members
        )
        raise ReplayRefused(
            f"Consumer group {group!r} has {len(description.members)} active member(s): "
            f"{members}. Stop its consumers first (Ctrl-C on ./dev up, or SIGTERM to "
            "`python -m service run`/`consume` on every instance), then replay, then start them."
        )


def _committed(settings: Settings, admin: AdminClient, partitions: list[int]) -> dict[int, int]:
    """Each partition's committed offset, where the group committed one."""
    request = ConsumerGroupTopicPartitions(
        settings.kafka_group, [TopicPartition(settings.kafka_topic, p) for p in partitions]
    )
    futures = admin.list_consumer_group_offsets([request], request_timeout=ADMIN_TIMEOUT_S)
    answer: ConsumerGroupTopicPartitions = _result(settings, futures[settings.kafka_group])
    return {tp.partition: tp.offset for tp in answer.topic_partitions or [] if tp.offset >= 0}


def _targets(
    settings: Settings, admin: AdminClient, partitions: list[int], since: datetime
) -> dict[int, int]:
    """The first offset at or after `since` on each partition, or its end if there is none."""
    at = _offsets(settings, admin, partitions, OffsetSpec.for_timestamp(_millis(since)))
    latest: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    end = _offsets(settings, admin, partitions, latest)
    return {p: at[p] if at[p] >= 0 else end[p] for p in partitions}


def _offsets(
    settings: Settings, admin: AdminClient, partitions: list[int], spec: OffsetSpec
) -> dict[int, int]:
    request = {TopicPartition(settings.kafka_topic, p): spec for p in partitions}
    futures = admin.list_offsets(request, request_timeout=ADMIN_TIMEOUT_S)
    return {tp.partition: _result(settings, future).offset for tp, future in futures.items()}


def _alter(settings: Settings, admin: AdminClient, moves: Iterable[Move]) -> None:
    group = settings.kafka_group
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(settings.kafka_topic, m.partition, m.new) for m in moves]
    )
    futures = admin.alter_consumer_group_offsets([request], request_timeout=ADMIN_TIMEOUT_S)
    answer: ConsumerGroupTopicPartitions = _result(settings, futures[group])
    refused = [tp for tp in answer.topic_partitions or [] if tp.error is not None]
    if any(_joined(tp.error) for tp in refused):
        # Kafka refuses to move the offsets of a group with members (each partition answers
        # UNKNOWN_MEMBER_ID): one joined after the check above.
        raise ReplayRefused(
            f"A consumer joined group {group!r} while its offsets were being moved, and Kafka "
            "refused the move. Stop every consumer of the group, then replay again."
        )
    if refused:
        raise BrokerUnavailable(
            f"Kafka at {settings.kafka_brokers} refused the new offsets of group {group!r}: "
            + ", ".join(f"partition {tp.partition}: {tp.error}" for tp in refused)
        )


def _joined(error: object) -> bool:
    return isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_MEMBER_ID


def _result(settings: Settings, future: "Future[_T]") -> _T:
    """An admin request's answer; Kafka's refusals and silence as BrokerUnavailable."""
    try:
        return future.result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerUnavailable(f"Kafka at {settings.kafka_brokers}: {exc.args[0]}") from exc
    except TimeoutError as exc:
        raise BrokerUnavailable(
            f"Kafka at {settings.kafka_brokers} did not answer within {ADMIN_TIMEOUT_S:.0f} s"
        ) from exc


def _millis(instant: datetime) -> int:
    """`instant` in whole milliseconds since the epoch, rounded up: a message's timestamp is
    whole milliseconds, so the first one at or after `instant` has at least this one."""
    since_epoch = instant - datetime(1970, 1, 1, tzinfo=UTC)
    # Not below 0: Kafka reads -1 and -2 as "the end" and "the start".
    return max(0, -(-since_epoch // timedelta(milliseconds=1)))
