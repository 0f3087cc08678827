"""Prometheus metrics shared by the consumer and every API worker process.

prometheus_client's multiprocess mode keeps each process's values in files under one
directory and sums them at scrape time. It picks that mode when it is first imported, so
this module points PROMETHEUS_MULTIPROC_DIR at METRICS_DIR before importing it; the process
that starts the others empties the directory first (`reset_metrics_dir`).
"""

import os
import shutil
from pathlib import Path

from service.cache import CacheStats
from service.config import DEFAULT_METRICS_DIR

METRICS_DIR = Path(os.environ.get("METRICS_DIR", DEFAULT_METRICS_DIR))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
METRICS_DIR.mkdir(parents=True, exist_ok=True)

from prometheus_client import (  # noqa: E402 - must follow the environment set-up above
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import (  # noqa: E402
    MultiProcessCollector,
    mark_process_dead,
)

ORDERS_CONSUMED = Counter("orders_consumed", "Messages read from the order topic")
ORDERS_STORED = Counter("orders_stored", "Orders newly written to PostgreSQL")
ORDERS_DUPLICATE = Counter("orders_duplicate", "Valid orders whose order_uid was already stored")
DEAD_LETTERS = Counter("dead_letters", "Messages sent to the dead-letter topic", ["kind"])
DEAD_LETTERS_REDRIVEN = Counter(
    "dead_letters_redriven",
    "Dead letters `dlq redrive` checked again: stored, already_stored, still_refused",
    ["outcome"],
)
BATCH_SECONDS = Histogram(
    "ingest_batch_seconds",
    "Time from a batch read to its offset commit",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Messages in the order topic not yet consumed", multiprocess_mode="livesum"
)
KAFKA_BROKERS_UP = Gauge(
    "kafka_brokers_up",
    "Brokers of the cluster the consumer is connected to (librdkafka's statistics)",
    multiprocess_mode="livesum",
)
KAFKA_BROKERS = Gauge(
    "kafka_brokers",
    "Brokers of the cluster the consumer knows of (librdkafka's statistics)",
    multiprocess_mode="livesum",
)
HTTP_REQUESTS = Counter("http_requests", "HTTP responses by status code", ["status"])
HTTP_REQUEST_SECONDS = Histogram(
    "http_request_seconds",
    "Time to answer a request that is not a cache hit (misses and everything Litestar routes;"
    " cache hits are not timed, the observation would cost too large a share of one)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3),
)
STORE_UNAVAILABLE = Counter(
    "store_unavailable",
    "Times PostgreSQL could not be reached: a consumer retry or an API answer of 503",
)
CACHE_HITS = Counter("cache_hits", "Order lookups answered from the shared cache")
CACHE_MISSES = Counter("cache_misses", "Order lookups that went to PostgreSQL")
DOCUMENT_READS = Counter(
    "document_reads", "PostgreSQL queries answering cache misses; concurrent misses share one"
)


def forget_process(pid: int) -> None:
    """Drop an exited process's live gauges (lag, brokers): a restarted consumer's would
    otherwise add up with the last one's."""
    mark_process_dead(pid, str(METRICS_DIR))  # type: ignore[no-untyped-call]


def reset_metrics_dir() -> None:
    """Forget the values of processes from an earlier run."""
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir(parents=True, exist_ok=True)


CONTENT_TYPE = "text/plain; version=0.0.4"


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(METRICS_DIR))  # type: ignore[no-untyped-call]
    return registry


def samples() -> list[tuple[str, dict[str, str], float]]:
    """Every process's metrics summed, as (sample name, labels, value): what a scrape would
    read, without the text format."""
    return [
        (sample.name, sample.labels, sample.value)
        for family in _registry().collect()
        for sample in family.samples
    ]


def render(cache: CacheStats, extra: list[str]) -> bytes:
    """The Prometheus text exposition of every process's metrics, the cache's figures and
    `extra` lines."""
    registry = _registry()
    extra = [
        *extra,
        *_family("cache_entries", "gauge", "Orders in the shared cache", cache.entries),
        *_family("cache_bytes", "gauge", "Bytes of order data in the cache", cache.bytes_used),
        *_family("cache_capacity", "gauge", "Orders the cache can hold", cache.capacity),
        *_family("cache_evictions_total", "counter", "Orders evicted", cache.evictions),
    ]
    return generate_latest(registry) + "".join(line + "\n" for line in extra).encode()


def _family(name: str, kind: str, help_text: str, value: int) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
