"""OffsetCommits: which offsets go out with the next commit, one commit at a time, after Kafka
refuses, confirms or answers late, and what is waited for when partitions are given up; and
HeldOffsets: a stored batch's offsets held until the dead letters sent before it are
acknowledged, released in the order the batches were stored."""

from typing import NamedTuple

from confluent_kafka import KafkaError, TopicPartition

from service.ingest.offsets import HeldOffsets, OffsetCommits

REFUSED = KafkaError(KafkaError.ILLEGAL_GENERATION)


class PartitionAnswer(NamedTuple):
    topic: str
    partition: int
    offset: int
    error: KafkaError | None


def _offsets(partitions: list[TopicPartition] | list[PartitionAnswer]) -> set[tuple[str, int, int]]:
    return {(tp.topic, tp.partition, tp.offset) for tp in partitions}


def test_a_batch_ending_while_a_commit_is_unanswered_goes_out_with_the_next_one() -> None:
    commits = OffsetCommits()
    commits.record({("t", 0): 10, ("t", 1): 5})
    first = commits.due()
    assert _offsets(first) == {("t", 0, 10), ("t", 1, 5)}
    commits.record({("t", 0): 20})
    commits.record({("t", 0): 30, ("t", 2): 1})
    assert commits.due() == []
    assert commits.answered(None, first) == []
    # The newest offset of each partition queued meanwhile, and nothing already confirmed.
    assert _offsets(commits.due()) == {("t", 0, 30), ("t", 2, 1)}


def test_nothing_is_due_when_nothing_is_queued() -> None:
    commits = OffsetCommits()
    assert commits.due() == []
    commits.record({("t", 0): 10})
    commits.answered(None, commits.due())
    assert commits.due() == []


def test_a_refused_commit_goes_out_again_behind_anything_newer() -> None:
    commits = OffsetCommits()
    commits.record({("t", 0): 10, ("t", 1): 5})
    first = commits.due()
    commits.record({("t", 1): 8})
    assert _offsets(commits.answered(REFUSED, first)) == {("t", 0, 10), ("t", 1, 5)}
    assert _offsets(commits.due()) == {("t", 0, 10), ("t", 1, 8)}


def test_a_refusal_of_one_partition_in_an_answer_requeues_that_one_only() -> None:
    commits = OffsetCommits()
    commits.record({("t", 0): 10, ("t", 1): 5})
    commits.due()
    # librdkafka sets a partition's own error; TopicPartition's is read-only from Python.
    answer = [PartitionAnswer("t", 0, 10, None), PartitionAnswer("t", 1, 5, REFUSED)]
    assert _offsets(commits.answered(None, answer)) == {("t", 1, 5)}  # type: ignore[arg-type]
    assert _offsets(commits.due()) == {("t", 1, 5)}


def test_an_answer_about_another_offset_than_the_one_sent_changes_nothing() -> None:
    commits = OffsetCommits()
    commits.record({("t", 0): 20})
    sent = commits.due()
    # A synchronous commit's answer comes through the same callback, later.
    assert commits.answered(REFUSED, [TopicPartition("t", 0, 10)]) == []
    assert commits.outstanding() == {("t", 0): 20}
    commits.answered(None, sent)
    assert commits.outstanding() == {}


def test_outstanding_is_the_newest_unconfirmed_offset_and_a_waited_commit_confirms_it() -> None:
    commits = OffsetCommits()
    commits.record({("t", 0): 10, ("t", 1): 3})
    commits.due()
    commits.record({("t", 0): 12})
    assert commits.outstanding() == {("t", 0): 12, ("t", 1): 3}
    assert commits.outstanding([("t", 1), ("t", 2)]) == {("t", 1): 3}
    commits.confirmed({("t", 0): 12, ("t", 1): 3})
    assert commits.outstanding() == {}
    # Confirmed while sent: the commit is no longer waited for.
    commits.record({("t", 2): 1})
    assert _offsets(commits.due()) == {("t", 2, 1)}


def test_a_partition_given_up_is_reported_once_and_its_late_answers_are_ignored() -> None:
    commits = OffsetCommits()
    commits.record({("t", 0): 10, ("t", 1): 5})
    sent = commits.due()
    commits.answered(None, [sent[1]])
    assert commits.forget([("t", 0), ("t", 1)]) == [("t", 0)]
    assert commits.answered(REFUSED, sent) == []
    assert commits.outstanding() == {}
    commits.record({("t", 2): 1})
    assert _offsets(commits.due()) == {("t", 2, 1)}


def test_held_offsets_wait_for_the_dead_letters_sent_before_their_batch() -> None:
    held = HeldOffsets()
    held.hold(0, {("t", 0): 10})  # no dead letter sent yet
    held.hold(3, {("t", 0): 20, ("t", 1): 7})  # dead letters 0-2 sent before this one
    held.hold(3, {("t", 0): 30})
    held.hold(5, {("t", 1): 9})
    assert held.release(0) == {("t", 0): 10}
    assert held.release(2) == {}, "dead letter 2 is not acknowledged yet"
    assert held.release(4) == {("t", 0): 30, ("t", 1): 7}, "the newest offset of each"
    assert len(held) == 1
    assert held.release(5) == {("t", 1): 9}
    assert len(held) == 0


def test_a_later_batch_never_passes_an_earlier_one_still_held() -> None:
    held = HeldOffsets()
    held.hold(4, {("t", 0): 10})
    held.hold(4, {("t", 1): 5})
    assert held.release(3) == {}
    assert len(held) == 2


def test_lost_partitions_are_dropped_from_the_held_offsets() -> None:
    held = HeldOffsets()
    held.hold(1, {("t", 0): 10, ("t", 1): 5})
    held.hold(2, {("t", 1): 8})
    held.drop([("t", 1)])
    assert held.release(2) == {("t", 0): 10}
