"""The consumer process: batches from Kafka, validated, stored, committed, cached.

Order of effects for each batch, which is what makes delivery at-least-once with no loss:
  1. decode every message; refused ones are queued for the dead-letter topic;
  2. store the valid ones in PostgreSQL (one transaction; retried while the database is down);
  3. wait until Kafka has acknowledged every dead letter;
  4. commit the batch's offsets synchronously;
  5. hand the newly stored orders to the cache.
A crash before 4 redelivers the batch, and the writer's ON CONFLICT makes that harmless.

Several instances share the topic through one consumer group (cooperative-sticky). A batch is
always finished and committed before the next consume(), and rebalance callbacks run only inside
consume(), so a partition is never given up with a stored batch uncommitted. librdkafka drops
from a consume() result the messages of partitions revoked during that call. A commit refused
in the middle of a rebalance (the group's generation is changing) is kept and retried with the
next batch, and on revocation while the partitions are still ours; partitions *lost* (session
expired) cannot be committed, so their new owner gets the batch again and skips it as
duplicates. While PostgreSQL is down the loop does not call consume(), so a rebalance waits for
the database (at most `max.poll.interval.ms`); nothing is committed for an unstored batch.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from service import metrics
from service.cache import SharedCache
from service.config import Settings
from service.errors import CacheError, StoreUnavailable
from service.ingest.deadletter import DeadLetters
from service.ingest.kafka import consumer_config, ensure_topics
from service.ingest.progress import IngestProgress
from service.model import Order, Rejection, decode_order, encode_order
from service.store.db import connect
from service.store.migrate import require_current
from service.store.writer import OrderWriter, Rejected

log = logging.getLogger(__name__)

CacheSink = Callable[[list[tuple[str, bytes]]], object]

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


class _Stats(msgspec.Struct):
    """The part of librdkafka's statistics JSON that gives consumer lag."""

    topics: dict[str, dict[str, Any]] = {}


def _lag_from_stats(raw: str) -> int:
    stats = msgspec.json.decode(raw, type=_Stats)
    lag = 0
    for topic in stats.topics.values():
        for partition_id, partition in topic.get("partitions", {}).items():
            if partition_id != "-1" and partition.get("consumer_lag", -1) > 0:
                lag += partition["consumer_lag"]
    return lag


class OrderConsumer:
    """Runs the batch loop until `stop` is set; see the module docstring for the ordering."""

    def __init__(self, settings: Settings, cache: CacheSink | None = None) -> None:
        self._settings = settings
        self._cache = cache
        self.stop = threading.Event()
        self.progress = IngestProgress()
        self._writer: OrderWriter | None = None
        # Next offsets of stored batches whose commit Kafka refused; retried (see module doc).
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._dead_letters = DeadLetters(settings)
        config = consumer_config(settings)
        config["stats_cb"] = lambda raw: self.progress.set_lag(_lag_from_stats(raw))
        config["error_cb"] = lambda error: log.warning("kafka: %s", error)
        self._consumer = Consumer(config)

    def run(self) -> None:
        """Consume until stopped, then close the consumer cleanly (leaving the group)."""
        self._consumer.subscribe(
            [self._settings.kafka_topic],
            on_assign=lambda _, parts: log.info("assigned %s", _describe(parts)),
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self.stop.is_set():
                messages = self._consumer.consume(
                    self._settings.ingest_batch_size, self._settings.ingest_batch_wait_ms / 1000
                )
                if messages:
                    self._process(messages)
                self.progress.maybe_log()
        finally:
            self.progress.maybe_log(force=True)
            self._consumer.close()
            if self._writer is not None:
                self._writer.close()

    def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        valid: list[tuple[Order, Message]] = []
        offsets: dict[tuple[str, int], int] = {}
        consumed = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", error)
                continue
            consumed += 1
            offsets[(message.topic() or "", message.partition() or 0)] = message.offset() or 0
            result = decode_order(message.value() or b"")
            if isinstance(result, Rejection):
                self._dead_letter(message, result.kind, result.reason)
            else:
                valid.append((result, message))
        if not offsets:
            return
        outcome = self._store([order for order, _ in valid])
        if outcome is None:
            return  # stopped during a database outage: nothing committed, all redelivered
        stored, rejected = outcome
        if rejected:
            message_of = {id(order): message for order, message in valid}
            for order, exc in rejected:
                self._dead_letter(message_of[id(order)], "db_rejected", str(exc))
        self._dead_letters.flush()
        self._commit(offsets)
        if self._cache is not None and stored:
            self._cache([(order.order_uid, encode_order(order)) for order in stored])
        self.progress.batch_done(
            consumed=consumed,
            stored=len(stored),
            duplicates=len(valid) - len(stored) - len(rejected),
            seconds=time.perf_counter() - started,
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

    def _store(self, orders: list[Order]) -> tuple[list[Order], list[Rejected]] | None:
        """Write the batch, waiting out database outages with consumption paused.
        None means a stop was asked for while the database was still down."""
        if not orders:
            return [], []
        delay = BACKOFF_START_S
        paused: list[TopicPartition] = []
        while True:
            try:
                if self._writer is None:
                    self._writer = OrderWriter(connect(self._settings))
                outcome = self._writer.write_isolating(orders)
                break
            except StoreUnavailable as exc:
                metrics.STORE_UNAVAILABLE.inc()
                self._drop_writer()
                if not paused:
                    paused = self._consumer.assignment()
                    self._consumer.pause(paused)
                log.warning("%s; retrying in %.1f s with consumption paused", exc, delay)
                if self.stop.wait(delay):
                    return None
                delay = min(delay * 2, BACKOFF_MAX_S)
        if paused:
            self._consumer.resume(paused)
            log.info("PostgreSQL is back; consumption resumed")
        return outcome

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        for key, offset in offsets.items():
            self._uncommitted[key] = offset + 1
        self._commit_uncommitted(list(self._uncommitted))

    def _commit_uncommitted(self, keys: list[tuple[str, int]]) -> None:
        partitions = [TopicPartition(t, p, self._uncommitted[(t, p)]) for t, p in keys]
        if not partitions:
            return
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance under way; the rows are stored, so this is retried with
            # the next batch or on revocation, and at worst the next owner skips duplicates.
            log.warning("offset commit failed (%s); will retry", exc)
            return
        for key in keys:
            del self._uncommitted[key]

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        # Still ours inside this callback: the last chance to commit what is stored for them.
        revoked = [(p.topic, p.partition) for p in partitions]
        self._commit_uncommitted([key for key in revoked if key in self._uncommitted])
        self._forget(revoked)
        log.info("revoked %s", _describe(partitions))

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own them already; committing now could move its offsets.
        self._forget([(p.topic, p.partition) for p in partitions])
        log.warning(
            "lost %s (session expired); their uncommitted batches are redelivered",
            _describe(partitions),
        )

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            if self._uncommitted.pop(key, None) is not None:
                log.warning("gave up %s[%s] with its last offset uncommitted", *key)


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
    cache = _attach_cache(settings)
    consumer = OrderConsumer(settings, cache.put_many if cache is not None else None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop.set())
    consumer.run()
