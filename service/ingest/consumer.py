"""The consumer process: batches from Kafka, validated, stored, committed, cached, in a pipeline.

Three stages, so that PostgreSQL writes one batch while Python decodes the next:
  1. gather (main thread): take what Kafka has, decode it, queue refused messages for the
     dead-letter topic, encode each valid order once and format its rows into the batch's
     COPY payloads (`CopyBatch`). With a batch in the database, keep taking whatever
     arrives until that write is done or the batch is full; with none, wait for the first
     message (`INGEST_BATCH_WAIT_MS` at most), then take what is waiting. Batches size
     themselves: a write takes whatever arrived during the last one, up to
     `INGEST_BATCH_SIZE`.
  2. store (one writer thread): send the payloads and commit, in one transaction; nearly all
     of it is waiting on PostgreSQL with the GIL released. Each time PostgreSQL answers, the
     writer needs the GIL back from the decoding main thread, a dozen times a batch, so the
     process hands the GIL over every `GIL_SWITCH_INTERVAL_S`, far sooner than CPython's default;
  3. finish (main thread, once the write is done and the next batch is on its way to the
     database): hand the stored bodies to the cache, dead-letter what PostgreSQL refused,
     and hold the batch's offsets until Kafka has acknowledged every dead letter sent so far
     (`HeldOffsets`); released ones are committed without waiting for the answer, one
     commit at a time (`OffsetCommits`). Storing goes on while dead letters wait, so a
     dead-letter partition without a leader holds commits back, not orders (up to
     `MAX_HELD_BATCHES`, then the consumer waits for Kafka).
Offsets are therefore committed only after that batch's database commit and its dead letters'
acknowledgements, one batch after the other, so in order per partition. A crash anywhere
redelivers what was not committed, and the writer's ON CONFLICT makes that harmless. Before
partitions are given up (revocation, the end of the run) the consumer waits for the commit.

Several instances share the topic through one consumer group (cooperative-sticky). Rebalance
callbacks run only inside consume(), on the main thread; on revocation the pipeline is drained
(the batch in the database and the one gathered are stored and finished, every dead letter
acknowledged, and the offsets committed, waiting for Kafka's answer) while the partitions are
still ours. librdkafka drops from a consume() result the messages of partitions revoked during
that call. A commit refused in the middle of a rebalance (the group's generation is changing) is
queued again and retried with the next batch, and on revocation; partitions *lost* (session
expired) cannot be committed, so their offsets are dropped from the batches in hand and the held
ones, and their new owner gets them again and skips them as duplicates. While PostgreSQL is down
the main thread waits for the write (the one place `StoreUnavailable` is handled) and does not
call consume(), so a rebalance waits for the database (at most `max.poll.interval.ms`); nothing
is committed for an unstored batch.
"""

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from service.cache import SharedCache
from service.config import Settings
from service.errors import CacheError, StoreUnavailable
from service.ingest.deadletter import DeadLetters
from service.ingest.kafka import consumer_config, ensure_topics
from service.ingest.offsets import HeldOffsets, OffsetCommits
from service.ingest.progress import IngestProgress
from service.model import Document, Rejection, decode_order
from service.observability import metrics
from service.store.copy_in import CopyBatch
from service.store.db import connect
from service.store.migrate import require_current
from service.store.writer import OrderWriter, Written

log = logging.getLogger(__name__)

CacheSink = Callable[[list[tuple[bytes, bytes]]], object]

# A retry is one connection attempt from one process, cheap for the server; a long cap would
# only add to a failover: the new primary found up to BACKOFF_MAX_S after its promotion.
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 4.0
# While a batch is in the database, the gatherer takes what Kafka has this often, and at once
# when the write ends.
GATHER_STEP_S = 0.002
# How long the decoding thread may keep the GIL while the writer waits for it. With CPython's
# default, PostgreSQL sat idle behind every one of the writer's round trips; the value is the
# best of a sweep (docs/profiling-study.md, 7.3).
GIL_SWITCH_INTERVAL_S = 0.0002
# Stored batches whose offsets may wait for dead letters' acknowledgements before the consumer
# stops taking more and waits for Kafka: what a crash would redeliver, at most.
MAX_HELD_BATCHES = 256


class _Stats(msgspec.Struct):
    """The parts of librdkafka's statistics JSON the service reports: lag and brokers."""

    topics: dict[str, dict[str, Any]] = {}
    brokers: dict[str, dict[str, Any]] = {}


def _on_stats(progress: IngestProgress, raw: str) -> None:
    stats = msgspec.json.decode(raw, type=_Stats)
    # The brokers the cluster's metadata named (node id >= 0); the bootstrap and coordinator
    # entries are connections (-1). With the cluster unreachable librdkafka drops the named
    # ones, and the configured bootstrap servers are all there is to count.
    nodes = [broker for broker in stats.brokers.values() if broker.get("nodeid", -1) >= 0] or [
        broker for name, broker in stats.brokers.items() if name.endswith("/bootstrap")
    ]
    progress.set_kafka(
        _lag(stats), connected=sum(b.get("state") == "UP" for b in nodes), known=len(nodes)
    )


def _lag(stats: _Stats) -> int:
    lag = 0
    for topic in stats.topics.values():
        for partition_id, partition in topic.get("partitions", {}).items():
            if partition_id != "-1" and partition.get("consumer_lag", -1) > 0:
                lag += partition["consumer_lag"]
    return lag


class _Batch:
    """Messages taken from Kafka together: their orders, encoded and formatted for COPY, each
    with its message, and the offsets they advance."""

    __slots__ = ("consumed", "copy", "offsets", "started", "tagged", "taken", "valid")

    def __init__(self) -> None:
        self.started = 0.0
        self.taken = 0
        self.consumed = 0
        self.valid = 0
        self.copy = CopyBatch()
        # The first copy of each order in the batch, in `copy`'s order; later copies are
        # duplicates, stored by the first.
        self.tagged: list[tuple[Document, Message]] = []
        self.offsets: dict[tuple[str, int], int] = {}


class OrderConsumer:
    """Runs the pipeline until `stop` is set; see the module docstring for the ordering."""

    def __init__(self, settings: Settings, cache: CacheSink | None = None) -> None:
        self._settings = settings
        self._cache = cache
        self.stop = threading.Event()
        self.progress = IngestProgress()
        self._writer: OrderWriter | None = None
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._gathering = _Batch()
        self._in_flight: tuple[_Batch, Future[Written[Message]]] | None = None
        self._commits = OffsetCommits()
        self._held = HeldOffsets()
        self._dead_letters = DeadLetters(settings)
        config = consumer_config(settings)
        config["stats_cb"] = lambda raw: _on_stats(self.progress, raw)
        config["error_cb"] = lambda error: log.warning("kafka: %s", error)
        config["on_commit"] = self._on_commit
        self._consumer = Consumer(config)

    def run(self) -> None:
        """Consume until stopped, drain the pipeline, then close cleanly (leaving the group)."""
        self._consumer.subscribe(
            [self._settings.kafka_topic],
            on_assign=lambda _, parts: log.info("assigned %s", _describe(parts)),
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self.stop.is_set():
                self._gather()
                # Dead letters acknowledged and the last commit answered meanwhile: what
                # batches that frees goes out now.
                self._release()
                self._advance()
                self.progress.maybe_log()
            self._settle()
            self._commit_now()
        except BaseException:
            # What is in hand stays uncommitted, for redelivery; closing must not drain it.
            self._in_flight, self._gathering = None, _Batch()
            raise
        finally:
            self.progress.maybe_log(force=True)
            self._consumer.close()
            self._store_thread.shutdown()
            if self._writer is not None:
                self._writer.close()

    def _gather(self) -> None:
        """Stage 1: take from Kafka and decode into the next batch (see the module doc)."""
        limit = self._settings.ingest_batch_size
        if self._in_flight is None:
            first = self._consumer.consume(1, self._settings.ingest_batch_wait_ms / 1000)
            self._decode(first)
            if first and limit > 1:
                self._decode(self._consumer.consume(limit - 1, 0))
            return
        # Kafka's queue taken as it is; with it empty, the wait is on the write, not inside
        # consume(), so its end is noticed at once and what arrived meanwhile goes with this
        # batch. A rebalance inside consume() may drain the pipeline, so the state is read
        # afresh.
        while (
            self._in_flight is not None and self._gathering.taken < limit and not self.stop.is_set()
        ):
            messages = self._consumer.consume(limit - self._gathering.taken, 0)
            self._decode(messages)
            if self._in_flight is None or self._in_flight[1].done():
                break
            if not messages:
                wait([self._in_flight[1]], GATHER_STEP_S)

    def _decode(self, messages: list[Message]) -> None:
        batch = self._gathering
        if messages and not batch.taken:
            batch.started = time.perf_counter()
        batch.taken += len(messages)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", error)
                continue
            batch.consumed += 1
            batch.offsets[(message.topic() or "", message.partition() or 0)] = message.offset() or 0
            result = decode_order(message.value() or b"", self._settings.unknown_fields)
            if isinstance(result, Rejection):
                self._dead_letter(message, result.kind, result.reason)
                continue
            batch.valid += 1
            if batch.copy.add(*result):
                batch.tagged.append((result, message))

    def _advance(self) -> None:
        """Once the batch in the database is stored, send the gathered one after it (stage 2),
        then finish the stored one (stage 3) while the next is being written."""
        previous = self._in_flight
        written = None
        if previous is not None:
            written = self._stored(*previous)
            if written is None:
                return
        self._in_flight = None
        batch, self._gathering = self._gathering, _Batch()
        if batch.offsets:
            self._in_flight = (batch, self._store_thread.submit(self._write, batch))
        if previous is not None and written is not None:
            self._finish(previous[0], written)

    def _drain(self) -> None:
        """Store, finish and commit everything taken from Kafka so far."""
        while self._in_flight is not None or self._gathering.offsets:
            self._advance()

    def _write(self, batch: _Batch) -> Written[Message]:
        """Stage 2, on the writer thread: the only code that touches the connection."""
        if not batch.tagged:
            return Written([], [])
        if self._writer is None:
            self._writer = OrderWriter(connect(self._settings))
        return self._writer.write_isolating(batch.tagged, batch.copy)

    def _stored(self, batch: _Batch, write: Future[Written[Message]]) -> Written[Message] | None:
        """The batch's write, repeated with backoff and consumption paused while PostgreSQL is
        unavailable. None: a stop came first; everything in hand is dropped uncommitted."""
        delay = BACKOFF_START_S
        paused: list[TopicPartition] = []
        while True:
            try:
                written = write.result()
                break
            except StoreUnavailable as exc:
                metrics.STORE_UNAVAILABLE.inc()
                self._drop_writer()
                if not paused:
                    paused = self._consumer.assignment()
                    self._consumer.pause(paused)
                log.warning("%s; retrying in %.1f s with consumption paused", exc, delay)
                if self.stop.wait(delay):
                    self._in_flight, self._gathering = None, _Batch()
                    return None
                delay = min(delay * 2, BACKOFF_MAX_S)
                write = self._store_thread.submit(self._write, batch)
        if paused:
            self._consumer.resume(paused)
            log.info("PostgreSQL is back; consumption resumed")
        return written

    def _finish(self, batch: _Batch, written: Written[Message]) -> None:
        """Stage 3: the cache filled, then dead letters acknowledged, then offsets committed.

        The cache first: the orders are in PostgreSQL already, and the cache is only a copy
        of it, so they can be answered at once instead of after two round trips to Kafka.
        """
        if self._cache is not None and written.stored:
            self._cache([(order.order_uid.encode(), body) for order, body in written.stored])
        for message, exc in written.rejected:
            self._dead_letter(message, "db_rejected", str(exc))
        self._held.hold(self._dead_letters.sent, {k: o + 1 for k, o in batch.offsets.items()})
        if len(self._held) > MAX_HELD_BATCHES:
            log.warning("%d batches wait for dead letters; waiting for Kafka", MAX_HELD_BATCHES)
            self._dead_letters.flush()
        self._release()
        self.progress.batch_done(
            consumed=batch.consumed,
            stored=len(written.stored),
            duplicates=batch.valid - len(written.stored) - len(written.rejected),
            seconds=time.perf_counter() - batch.started,
        )

    def _dead_letter(self, message: Message, kind: str, reason: str) -> None:
        log.info(
            "dead letter %s at %s[%s]@%s: %s",
            kind,
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
        )
        self._dead_letters.send(message, kind, reason)
        self.progress.dead_letter(kind)

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _release(self) -> None:
        """Queue the offsets of the batches whose dead letters are all acknowledged, and
        commit them without waiting (offsets.py says why): now if no commit is unanswered,
        else with the next one."""
        self._dead_letters.poll()
        self._queue_released()
        self._send_commit()

    def _queue_released(self) -> None:
        released = self._held.release(self._dead_letters.acknowledged)
        if released:
            self._commits.record(released)

    def _settle(self) -> None:
        """Everything taken stored, every dead letter acknowledged, all offsets queued for
        the synchronous commit that follows."""
        self._drain()
        self._dead_letters.flush()
        self._queue_released()

    def _send_commit(self) -> None:
        """Send what is queued if the last commit is answered; its answer comes to
        `_on_commit` inside a later consume()."""
        partitions = self._commits.due()
        if not partitions:
            return
        try:
            self._consumer.commit(offsets=partitions, asynchronous=True)
        except KafkaException as exc:
            self._on_commit(exc.args[0], partitions)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        refused = self._commits.answered(error, partitions)
        if refused:
            # Typically a rebalance under way; the rows are stored, so this is retried with
            # the next batch or on revocation, and at worst the next owner skips duplicates.
            reason = error or refused[0].error
            log.warning("offset commit of %s refused (%s); will retry", _describe(refused), reason)

    def _commit_now(self, keys: list[tuple[str, int]] | None = None) -> None:
        """Commit the unconfirmed offsets of `keys` (None: all) and wait for Kafka's answer:
        partitions are about to be given up."""
        offsets = self._commits.outstanding(keys)
        if not offsets:
            return
        partitions = [TopicPartition(t, p, offset) for (t, p), offset in offsets.items()]
        try:
            answer = self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit of %s failed (%s)", _describe(partitions), exc)
            return
        refused = {(tp.topic, tp.partition) for tp in answer or [] if tp.error is not None}
        self._commits.confirmed({k: o for k, o in offsets.items() if k not in refused})

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        # Still ours inside this callback: the last chance to store and commit what we took.
        self._settle()
        revoked = [(p.topic, p.partition) for p in partitions]
        self._commit_now(revoked)
        self._forget(revoked)
        log.info("revoked %s", _describe(partitions))

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own them already; committing now could move its offsets. The
        # batches in hand are still stored (harmless duplicates), their offsets never committed.
        lost = [(p.topic, p.partition) for p in partitions]
        for batch in self._batches_in_hand():
            for key in lost:
                batch.offsets.pop(key, None)
        self._held.drop(lost)
        self._forget(lost)
        log.warning(
            "lost %s (session expired); their uncommitted batches are redelivered",
            _describe(partitions),
        )

    def _batches_in_hand(self) -> list[_Batch]:
        in_flight = [self._in_flight[0]] if self._in_flight is not None else []
        return [*in_flight, self._gathering]

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        for key in self._commits.forget(keys):
            log.warning("gave up %s[%s] with its last offset unconfirmed", *key)


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"


def _attach_cache(settings: Settings) -> SharedCache | None:
    try:
        return SharedCache.attach(settings.cache_name)
    except CacheError as exc:
        log.warning("%s; consuming without filling the cache", exc)
        return None


def run_consumer(settings: Settings) -> None:
    """Create topics, then consume until SIGTERM or SIGINT; the batch in hand is finished.
    Stored orders go to the shared cache when its owner (`serve` or `run`) has created it."""
    require_current(settings)
    ensure_topics(settings)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    cache = _attach_cache(settings)
    consumer = OrderConsumer(settings, cache.put_encoded if cache is not None else None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop.set())
    consumer.run()
