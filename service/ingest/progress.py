"""The consumer's running totals: Prometheus counters plus one structured log line per interval."""

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import get_args

from service.model.codec import RejectionKind
from service.observability import metrics

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0


@dataclass
class IngestProgress:
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    lag: int = 0
    _interval_start: float = field(default_factory=time.monotonic, repr=False)
    _interval_stored: int = field(default=0, repr=False)
    _batch_seconds_total: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        # Every kind's series exists from the start at 0: Prometheus' increase() and rate()
        # cannot see the first dead letter of a series that appears already at 1.
        for kind in get_args(RejectionKind):
            metrics.DEAD_LETTERS.labels(kind)

    def dead_letter(self, kind: str) -> None:
        self.dead_lettered[kind] = self.dead_lettered.get(kind, 0) + 1
        metrics.DEAD_LETTERS.labels(kind).inc()

    def batch_done(self, consumed: int, stored: int, duplicates: int, seconds: float) -> None:
        self.consumed += consumed
        self.stored += stored
        self.duplicates += duplicates
        self.batches += 1
        self._interval_stored += stored
        self._batch_seconds_total += seconds
        metrics.ORDERS_CONSUMED.inc(consumed)
        metrics.ORDERS_STORED.inc(stored)
        metrics.ORDERS_DUPLICATE.inc(duplicates)
        metrics.BATCH_SECONDS.observe(seconds)

    def set_kafka(self, lag: int, connected: int, known: int) -> None:
        """From librdkafka's statistics: the lag, and how many of the brokers it knows it is
        connected to."""
        self.lag = lag
        metrics.CONSUMER_LAG.set(lag)
        metrics.KAFKA_BROKERS_UP.set(connected)
        metrics.KAFKA_BROKERS.set(known)

    def maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._interval_start
        if not force and elapsed < LOG_INTERVAL_S:
            return
        line = {key: value for key, value in asdict(self).items() if not key.startswith("_")}
        line["stored_per_s"] = round(self._interval_stored / elapsed, 1) if elapsed else 0.0
        line["mean_batch_ms"] = (
            round(1000 * self._batch_seconds_total / self.batches, 2) if self.batches else 0.0
        )
        log.info("ingest progress", extra={"fields": line})
        self._interval_start = now
        self._interval_stored = 0
