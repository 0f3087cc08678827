"""Settings from environment variables, checked once at start.

Every value is parsed and range-checked before anything connects, so a typo stops the start
with a message naming the variable (`Config 'HTTP_PORT' has value 'x'. Expected ...`) instead
of surfacing later as a confusing runtime error. Names follow the Go predecessor where it had one.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from service.errors import ConfigError

_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_METRICS_DIR = "/tmp/order-service-metrics"
# The default byte budget per cached order. An order encodes to about 1.2 KB (the reference
# order to 1.3 KB); the region is allocated up front, so a budget much larger than the data
# is memory held for nothing (CACHE_SIZE x 4096 held 4 GB for 1.3 GB of orders).
BYTES_PER_CACHED_ORDER = 2048
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# ASCII digits only: str.isdigit() also accepts superscripts, which int() then refuses.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the processes need to know; built by `load_settings`."""

    postgres_host: str
    postgres_port: int
    postgres_user: str
    postgres_password: str
    postgres_db: str
    postgres_pool_size: int
    miss_queries: int
    kafka_brokers: str
    kafka_topic: str
    kafka_dlq_topic: str
    kafka_group: str
    kafka_partitions: int
    kafka_replication: int
    ingest_batch_size: int
    ingest_batch_wait_ms: int
    cache_size: int
    cache_bytes: int
    cache_name: str
    http_host: str
    http_port: int
    http_workers: int | None  # None: `auto`, chosen by service.layout from the core count
    migrations_dir: str
    web_dir: str
    log_level: str

    @property
    def postgres_conninfo(self) -> str:
        """libpq connection string, quoted so any password works."""
        return make_conninfo(
            host=self.postgres_host,
            port=self.postgres_port,
            dbname=self.postgres_db,
            user=self.postgres_user,
            password=self.postgres_password,
            application_name="order-service",
        )


class _Reader:
    """Reads typed values out of an environment mapping, naming the variable on failure."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str, default: str) -> str:
        return self._environ.get(name, default)

    def text(self, name: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw(name, default).strip()
        if not value:
            raise ConfigError(f"Config {name!r} is empty. Expected a value (default {default!r}).")
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(
                f"Config {name!r} has value {value!r}. Expected letters, digits, '.', '_' or '-'."
            )
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name, str(default)).strip()
        number = int(value) if _INTEGER.fullmatch(value) else None
        if number is None or not low <= number <= high:
            raise ConfigError(
                f"Config {name!r} has value {value!r}. Expected an integer from {low} to {high}."
            )
        return number

    def integer_or_auto(self, name: str, low: int, high: int) -> int | None:
        """An integer in range, or None for the word `auto` (the default)."""
        value = self.raw(name, "auto").strip()
        if value.lower() == "auto":
            return None
        number = int(value) if _INTEGER.fullmatch(value) else None
        if number is None or not low <= number <= high:
            raise ConfigError(
                f"Config {name!r} has value {value!r}. "
                f"Expected 'auto' or an integer from {low} to {high}."
            )
        return number

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name, default).strip().upper()
        if value not in choices:
            raise ConfigError(
                f"Config {name!r} has value {value!r}. Expected one of {', '.join(choices)}."
            )
        return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and check every setting; raise ConfigError naming the first bad one."""
    env = _Reader(os.environ if environ is None else environ)
    topic = env.text("KAFKA_TOPIC", "orders", _NAME)
    cache_size = env.integer("CACHE_SIZE", 100_000, 1, 50_000_000)
    return Settings(
        postgres_host=env.text("POSTGRES_HOST", "127.0.0.1"),
        postgres_port=env.integer("POSTGRES_PORT", 55432, 1, 65535),
        postgres_user=env.text("POSTGRES_USER", "orders"),
        postgres_password=env.raw("POSTGRES_PASSWORD", "orders"),
        postgres_db=env.text("POSTGRES_DB", "orders"),
        postgres_pool_size=env.integer("POSTGRES_POOL_SIZE", 4, 1, 100),
        miss_queries=env.integer("MISS_QUERIES", 1, 1, 100),
        kafka_brokers=env.text("KAFKA_BROKERS", "localhost:9092"),
        kafka_topic=topic,
        kafka_dlq_topic=env.text("KAFKA_DLQ_TOPIC", f"{topic}.dlq", _NAME),
        kafka_group=env.text("KAFKA_GROUP", "orders-service", _NAME),
        kafka_partitions=env.integer("KAFKA_PARTITIONS", 6, 1, 1000),
        kafka_replication=env.integer("KAFKA_REPLICATION", 1, 1, 7),
        ingest_batch_size=env.integer("INGEST_BATCH_SIZE", 5000, 1, 100_000),
        ingest_batch_wait_ms=env.integer("INGEST_BATCH_WAIT_MS", 50, 1, 60_000),
        cache_size=cache_size,
        cache_bytes=env.integer(
            "CACHE_BYTES", max(1 << 20, cache_size * BYTES_PER_CACHED_ORDER), 1 << 20, 1 << 40
        ),
        cache_name=env.text("CACHE_NAME", "order-service-cache", _NAME),
        http_host=env.text("HTTP_HOST", "127.0.0.1"),
        http_port=env.integer("HTTP_PORT", 8082, 1, 65535),
        http_workers=env.integer_or_auto("HTTP_WORKERS", 1, 64),
        migrations_dir=env.text("MIGRATIONS_DIR", str(_REPO_ROOT / "migrations")),
        web_dir=env.text("WEB_DIR", str(_REPO_ROOT / "web")),
        log_level=env.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
    )
