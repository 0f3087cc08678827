"""The consumer's offsets on their way to Kafka: queued, sent, refused, confirmed.

After each batch's database commit its next offsets are committed *without waiting*: a group
coordinator takes milliseconds to answer (it lingers before writing a group's commits:
docs/performance.md), and a consumer that waits for it leaves every order behind that batch
waiting with it. Kafka answers later, inside a consume() call, and `answered` records that
answer: a refused offset is queued again. Only where partitions are about to be given up
(revocation, the end of the run) does the consumer wait, committing `outstanding`
synchronously.

One commit at a time: the broker answers one connection's requests in order, one after the
other, and the consumer's heartbeats share that connection. Batches that end faster than a
commit is answered would otherwise pile commits up in front of the heartbeats until the group
drops the consumer (seen in the end-to-end benchmark: the session timed out;
docs/profiling-study.md, 7.2). While a commit is out, the
batches that end only queue their offsets; the next commit carries the newest of each.

Ordering: a newer offset for a partition supersedes an older one, so an answer about any other
offset than the one sent (a synchronous commit's answer comes through the same callback) is
ignored.

Before any of that, a stored batch's offsets wait in `HeldOffsets` until Kafka has acknowledged
the dead letters sent up to then (deadletter.py): released in the order the batches were
stored, so a partition's offset never passes a dead letter still on its way.
"""

from collections import deque
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, TopicPartition

Key = tuple[str, int]


class OffsetCommits:
    """Next offsets per partition: queued to send (new or refused), and sent, unanswered."""

    def __init__(self) -> None:
        self._queued: dict[Key, int] = {}
        self._sent: dict[Key, int] = {}

    def record(self, next_offsets: Mapping[Key, int]) -> None:
        """Queue a stored batch's next offsets."""
        self._queued.update(next_offsets)

    def due(self) -> list[TopicPartition]:
        """What to commit now: everything queued, unless a commit is still unanswered."""
        if self._sent or not self._queued:
            return []
        self._sent, self._queued = self._queued, {}
        return [TopicPartition(t, p, offset) for (t, p), offset in self._sent.items()]

    def answered(
        self, error: KafkaError | None, partitions: Iterable[TopicPartition]
    ) -> list[TopicPartition]:
        """Kafka's answer to a commit: confirmed offsets are done, refused ones queued again
        (behind any newer one queued since). Returns the refused ones."""
        refused = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if self._sent.get(key) != tp.offset:
                continue
            del self._sent[key]
            if error is not None or tp.error is not None:
                self._queued.setdefault(key, tp.offset)
                refused.append(tp)
        return refused

    def outstanding(self, keys: Iterable[Key] | None = None) -> dict[Key, int]:
        """The newest unconfirmed offset of each partition in `keys` (None: all) that has one."""
        wanted = set(self._queued) | set(self._sent) if keys is None else set(keys)
        newest: dict[Key, int] = {}
        for key in wanted:
            offsets = [o for o in (self._queued.get(key), self._sent.get(key)) if o is not None]
            if offsets:
                newest[key] = max(offsets)
        return newest

    def confirmed(self, offsets: Mapping[Key, int]) -> None:
        """`offsets` were committed synchronously; what they cover is done."""
        for key, offset in offsets.items():
            for pending in (self._queued, self._sent):
                if pending.get(key, offset + 1) <= offset:
                    del pending[key]

    def forget(self, keys: Iterable[Key]) -> list[Key]:
        """Drop the partitions' offsets (given up); return those that had one unconfirmed."""
        dropped = []
        for key in keys:
            queued = self._queued.pop(key, None)
            sent = self._sent.pop(key, None)
            if queued is not None or sent is not None:
                dropped.append(key)
        return dropped


class HeldOffsets:
    """Stored batches' next offsets, each held until the dead letters sent before it are
    acknowledged (`mark`: how many had been sent), released oldest first."""

    def __init__(self) -> None:
        self._held: deque[tuple[int, dict[Key, int]]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, mark: int, next_offsets: Mapping[Key, int]) -> None:
        self._held.append((mark, dict(next_offsets)))

    def release(self, acknowledged: int) -> dict[Key, int]:
        """The newest offset per partition of the batches whose dead letters are all
        acknowledged (those numbered below `acknowledged`), up to the first that is not."""
        released: dict[Key, int] = {}
        while self._held and self._held[0][0] <= acknowledged:
            released.update(self._held.popleft()[1])
        return released

    def drop(self, keys: Iterable[Key]) -> None:
        """Forget the partitions' held offsets (lost to another member)."""
        lost = set(keys)
        for _, offsets in self._held:
            for key in lost:
                offsets.pop(key, None)
