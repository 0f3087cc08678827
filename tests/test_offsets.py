"""OffsetCommits: which offsets go out with the next commit, after Kafka refuses, confirms or
answers late, and what is waited for when partitions are given up."""

from typing import NamedTuple

from confluent_kafka import KafkaError, TopicPartition

from service.ingest.offsets import OffsetCommits

REFUSED = KafkaError(KafkaError.ILLEGAL_GENERATION)


class PartitionAnswer(NamedTuple):
    topic: str
    partition: int
    offset: int
    error: KafkaError | None


def _sent(partitions: list[TopicPartition] | list[PartitionAnswer]) -> set[tuple[str, int, int]]:
    return {(tp.topic, tp.partition, tp.offset) for tp in partitions}


def test_each_batch_sends_its_own_offsets_and_nothing_confirmed_goes_out_again() -> None:
    commits = OffsetCommits()
    first = commits.send({("t", 0): 10, ("t", 1): 5})
    assert _sent(first) == {("t", 0, 10), ("t", 1, 5)}
    assert commits.answered(None, first) == []
    assert _sent(commits.send({("t", 0): 20})) == {("t", 0, 20)}


def test_a_refused_commit_goes_out_again_with_the_next_batch() -> None:
    commits = OffsetCommits()
    first = commits.send({("t", 0): 10, ("t", 1): 5})
    assert _sent(commits.answered(REFUSED, first)) == {("t", 0, 10), ("t", 1, 5)}
    assert _sent(commits.send({("t", 1): 8})) == {("t", 0, 10), ("t", 1, 8)}


def test_a_refusal_of_one_partition_in_an_answer_requeues_that_one_only() -> None:
    commits = OffsetCommits()
    commits.send({("t", 0): 10, ("t", 1): 5})
    # librdkafka sets a partition's own error; TopicPartition's is read-only from Python.
    answer = [PartitionAnswer("t", 0, 10, None), PartitionAnswer("t", 1, 5, REFUSED)]
    assert _sent(commits.answered(None, answer)) == {("t", 1, 5)}  # type: ignore[arg-type]
    assert _sent(commits.send({})) == {("t", 1, 5)}


def test_an_answer_about_an_offset_older_than_the_newest_sent_changes_nothing() -> None:
    commits = OffsetCommits()
    older = commits.send({("t", 0): 10})
    newer = commits.send({("t", 0): 20})
    # The older commit refused after the newer one went out: the newer settles partition 0.
    assert commits.answered(REFUSED, older) == []
    assert commits.outstanding() == {("t", 0): 20}
    commits.answered(None, newer)
    assert commits.outstanding() == {}
    assert _sent(commits.send({})) == set()


def test_outstanding_is_the_newest_unconfirmed_offset_and_a_waited_commit_confirms_it() -> None:
    commits = OffsetCommits()
    commits.answered(REFUSED, commits.send({("t", 0): 10}))
    commits.send({("t", 1): 3})
    assert commits.outstanding() == {("t", 0): 10, ("t", 1): 3}
    assert commits.outstanding([("t", 1), ("t", 2)]) == {("t", 1): 3}
    commits.confirmed({("t", 0): 10, ("t", 1): 3})
    assert commits.outstanding() == {}
    assert _sent(commits.send({})) == set()


def test_a_partition_given_up_is_reported_once_and_its_late_answers_are_ignored() -> None:
    commits = OffsetCommits()
    sent = commits.send({("t", 0): 10, ("t", 1): 5})
    commits.answered(None, [sent[1]])
    assert commits.forget([("t", 0), ("t", 1)]) == [("t", 0)]
    assert commits.answered(REFUSED, sent) == []
    assert commits.outstanding() == {}
