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

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from service.errors import ConfigError
from service.model import UNKNOWN_FIELDS_POLICIES, UnknownFields

_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_METRICS_DIR = "/tmp/order-service-metrics"
# The default byte budget per cached order. An order encodes to about 1.2 KB (the reference
# order to 1.3 KB); the region is allocated up front, so a budget much larger than the data
# is memory held for nothing.
BYTES_PER_CACHED_ORDER = 2048
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# ASCII digits only: str.isdigit() also accepts superscripts, which int() then refuses.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
KAFKA_PROPERTY_PREFIX = "KAFKA_PROPERTY_"
# A killed consumer's partitions go to the rest of the group after 10 s rather than
# librdkafka's default 45 s. On a multi-broker cluster it must outlast the move of the group's
# coordinator, which KRaft starts only after `broker.session.timeout.ms` (9 s by default):
# docs/deploying.md says to raise it there.
DEFAULT_SESSION_TIMEOUT_MS = 10_000

# librdkafka properties the service sets itself, from a dedicated setting or because delivery
# depends on them (offsets stored and committed only after the database commit); a
# KAFKA_PROPERTY_ for one of them is refused rather than silently winning or losing.
_OWNED_KAFKA_PROPERTIES = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "session.timeout.ms",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.idempotence",
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
    }
)


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How the service authenticates to Kafka and checks the brokers' certificates."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the processes need to know; built by `load_settings`."""

    # One host, or several separated by commas for libpq to try in turn (a primary and its
    # standbys); the ports likewise, one for all of them or one per host.
    postgres_host: str
    postgres_port: str
    postgres_user: str
    postgres_password: str
    postgres_db: str
    postgres_sslmode: str
    postgres_sslrootcert: str
    # Connection parameters from POSTGRES_URL beyond host, port, user, password and dbname.
    postgres_params: tuple[tuple[str, str], ...]
    # POSTGRES_READ_URL's parameters: where misses, /orders and the warm-up read ((): the
    # same server the writers use).
    postgres_read_params: tuple[tuple[str, str], ...]
    postgres_pool_size: int
    miss_queries: int
    kafka_brokers: str
    kafka_topic: str
    kafka_dlq_topic: str
    kafka_group: str
    kafka_partitions: int
    kafka_replication: int
    # min.insync.replicas of the topics the service creates (an acks=all write needs this many).
    kafka_min_insync_replicas: int
    # The consumer's session.timeout.ms: how long the group waits for a silent member.
    kafka_session_timeout_ms: int
    kafka_security: KafkaSecurity
    # librdkafka properties passed through unchanged (KAFKA_PROPERTY_*), applied last.
    kafka_properties: tuple[tuple[str, str], ...]
    ingest_batch_size: int
    ingest_batch_wait_ms: int
    # What a message's fields outside the contract do: refuse it, or keep them in its body.
    unknown_fields: UnknownFields
    cache_size: int
    cache_bytes: int
    cache_name: str
    http_host: str
    http_port: int
    http_workers: (
        int | None
    )  # None: `auto`, chosen by service.run.granian_workers from the core count
    # 0: /metrics on the public HTTP port; otherwise only on this internal listener.
    metrics_dir: str
    metrics_port: int
    metrics_host: str
    recent_orders: bool
    recent_orders_token: str
    migrations_dir: str
    web_dir: str
    log_level: str
    log_format: str

    @property
    def postgres_conninfo(self) -> str:
        """libpq connection string as configured, quoted so any password works."""
        return make_conninfo(
            host=self.postgres_host,
            port=self.postgres_port,
            dbname=self.postgres_db,
            user=self.postgres_user,
            password=self.postgres_password,
            application_name="order-service",
            sslmode=self.postgres_sslmode,
            sslrootcert=self.postgres_sslrootcert or None,
            **dict(self.postgres_params),
        )

    @property
    def postgres_read_conninfo(self) -> str:
        """The connection string for reads: POSTGRES_READ_URL (a replica) when it is set."""
        if not self.postgres_read_params:
            return self.postgres_conninfo
        return make_conninfo(application_name="order-service", **dict(self.postgres_read_params))

    @property
    def reads_from_replica(self) -> bool:
        return bool(self.postgres_read_params)

    @property
    def postgres_primary_conninfo(self) -> str:
        """The connection string for writers: of the hosts listed, libpq picks the one that
        accepts writes, so a standby (or a primary demoted since) is passed over."""
        return make_conninfo(self.postgres_conninfo, target_session_attrs="read-write")


class _Reader:
    """Reads typed values out of an environment mapping, naming the variable on failure."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, name: str, default: str) -> str:
        return self.environ.get(name, default)

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

    def ports(self, name: str, default: int) -> str:
        """A port, or a comma-separated list of them (libpq's multi-host form)."""
        value = self.raw(name, str(default)).strip()
        parts = [part.strip() for part in value.split(",")]
        if not all(_INTEGER.fullmatch(part) and 1 <= int(part) <= 65535 for part in parts):
            raise ConfigError(
                f"Config {name!r} has value {value!r}. Expected an integer from 1 to 65535, "
                "or several separated by commas (one per host in POSTGRES_HOST)."
            )
        return ",".join(str(int(part)) for part in parts)

    def choice(self, name: str, default: str, choices: tuple[str, ...], upper: bool = True) -> str:
        value = self.raw(name, default).strip()
        value = value.upper() if upper else value.lower()
        if value not in choices:
            raise ConfigError(
                f"Config {name!r} has value {value!r}. Expected one of {', '.join(choices)}."
            )
        return value

    def file(self, name: str) -> str:
        """A path that must name a readable file, or '' when the setting is absent."""
        value = self.raw(name, "").strip()
        if value and not os.access(value, os.R_OK):
            raise ConfigError(
                f"Config {name!r} has value {value!r}, which is not a readable file. "
                "Mount the file there or correct the path."
            )
        if value and not Path(value).is_file():
            raise ConfigError(f"Config {name!r} has value {value!r}, which is not a file.")
        return value

    def directory(self, name: str, default: str) -> str:
        """A directory this process can write to, created if it does not exist yet."""
        value = self.text(name, default)
        try:
            Path(value).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"Config {name!r} has value {value!r}, which cannot be created as a directory "
                f"({exc.strerror}). Point it at a writable directory."
            ) from exc
        if not Path(value).is_dir() or not os.access(value, os.W_OK | os.X_OK):
            raise ConfigError(
                f"Config {name!r} has value {value!r}, which is not a writable directory. "
                "Point it at a writable directory."
            )
        return value

    def prefixed(self, prefix: str) -> dict[str, str]:
        return {name: value for name, value in self.environ.items() if name.startswith(prefix)}


# POSTGRES_URL's parameters that stand for a setting of their own, so they are checked alike.
_URL_PARTS = {
    "host": "POSTGRES_HOST",
    "port": "POSTGRES_PORT",
    "user": "POSTGRES_USER",
    "password": "POSTGRES_PASSWORD",
    "dbname": "POSTGRES_DB",
    "sslmode": "POSTGRES_SSLMODE",
    "sslrootcert": "POSTGRES_SSLROOTCERT",
}


def _postgres_url(env: _Reader, name: str = "POSTGRES_URL") -> dict[str, str]:
    """A connection URL's parameters ({} when unset); the password never appears in an error."""
    url = env.raw(name, "").strip()
    if not url:
        return {}
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError as exc:
        detail = str(exc).replace(url, f"<{name}>")
        raise ConfigError(
            f"Config {name!r} is not a PostgreSQL connection URL "
            f"(postgresql://user:password@host:port/dbname?sslmode=...): {detail}"
        ) from exc
    return {key: str(value) for key, value in params.items() if value is not None}


def _postgres_hosts(env: _Reader) -> tuple[str, str]:
    """POSTGRES_HOST and POSTGRES_PORT, each one value or a comma-separated list: as many
    ports as hosts, or one port for every host, as libpq requires."""
    hosts = env.text("POSTGRES_HOST", "127.0.0.1")
    names = [name.strip() for name in hosts.split(",")]
    if not all(names):
        raise ConfigError(
            f"Config 'POSTGRES_HOST' has value {hosts!r}, which has an empty host between its "
            "commas. Expected a host, or several separated by commas."
        )
    ports = env.ports("POSTGRES_PORT", 55432)
    count = ports.count(",") + 1
    if count not in (1, len(names)):
        raise ConfigError(
            f"Config 'POSTGRES_PORT' has value {ports!r}: {count} ports for the {len(names)} "
            f"hosts of 'POSTGRES_HOST' ({hosts!r}). Give one port for all of them, or one each."
        )
    return ",".join(names), ports


def _kafka_security(env: _Reader) -> KafkaSecurity:
    protocol = env.choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", _KAFKA_PROTOCOLS)
    security = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=env.choice("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", _SASL_MECHANISMS),
        sasl_username=env.raw("KAFKA_SASL_USERNAME", "").strip(),
        sasl_password=env.raw("KAFKA_SASL_PASSWORD", ""),
        ca_file=env.file("KAFKA_SSL_CA_FILE"),
        cert_file=env.file("KAFKA_SSL_CERT_FILE"),
        key_file=env.file("KAFKA_SSL_KEY_FILE"),
    )
    uses_sasl = protocol.startswith("SASL_")
    if uses_sasl and not (security.sasl_username and security.sasl_password):
        raise ConfigError(
            f"Config 'KAFKA_SECURITY_PROTOCOL' is {protocol}, which needs "
            "'KAFKA_SASL_USERNAME' and 'KAFKA_SASL_PASSWORD'; set both."
        )
    if not uses_sasl and (security.sasl_username or security.sasl_password):
        raise ConfigError(
            "Config 'KAFKA_SASL_USERNAME'/'KAFKA_SASL_PASSWORD' are set, but "
            f"'KAFKA_SECURITY_PROTOCOL' is {protocol}; use SASL_SSL (or SASL_PLAINTEXT)."
        )
    uses_tls = protocol in ("SSL", "SASL_SSL")
    for name, value in (
        ("KAFKA_SSL_CA_FILE", security.ca_file),
        ("KAFKA_SSL_CERT_FILE", security.cert_file),
        ("KAFKA_SSL_KEY_FILE", security.key_file),
    ):
        if value and not uses_tls:
            raise ConfigError(
                f"Config {name!r} is set, but 'KAFKA_SECURITY_PROTOCOL' is {protocol}, "
                "which does not use TLS; use SSL or SASL_SSL."
            )
    if bool(security.cert_file) != bool(security.key_file):
        raise ConfigError(
            "Config 'KAFKA_SSL_CERT_FILE' and 'KAFKA_SSL_KEY_FILE' go together "
            "(the client certificate and its private key); set both or neither."
        )
    return security


def _kafka_properties(env: _Reader) -> tuple[tuple[str, str], ...]:
    properties = []
    for name, value in sorted(env.prefixed(KAFKA_PROPERTY_PREFIX).items()):
        key = name.removeprefix(KAFKA_PROPERTY_PREFIX).lower().replace("_", ".")
        if not key:
            raise ConfigError(f"Config {name!r} names no librdkafka property.")
        if key in _OWNED_KAFKA_PROPERTIES:
            raise ConfigError(
                f"Config {name!r} sets {key!r}, which the service sets itself; "
                "use its own setting (see docs/deploying.md) instead."
            )
        properties.append((key, value))
    return tuple(properties)


def _unknown_fields(env: _Reader) -> UnknownFields:
    value = env.choice("ORDER_UNKNOWN_FIELDS", "refuse", UNKNOWN_FIELDS_POLICIES, upper=False)
    return "keep" if value == "keep" else "refuse"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and check every setting; raise ConfigError naming the first bad one."""
    env = _Reader(os.environ if environ is None else environ)
    topic = env.text("KAFKA_TOPIC", "orders", _NAME)
    cache_size = env.integer("CACHE_SIZE", 100_000, 1, 50_000_000)
    url = _postgres_url(env)
    read_url = _postgres_url(env, "POSTGRES_READ_URL")
    if url:
        # The URL replaces the parts; its own defaults are libpq's, not the local cluster's.
        # A host written without its port in a multi-host URL leaves that entry empty.
        ports = url.get("port", "").split(",")
        url["port"] = ",".join(port.strip() or "5432" for port in ports)
        env = _Reader(
            {**env.environ, **{_URL_PARTS[k]: v for k, v in url.items() if k in _URL_PARTS}}
        )
    replication = env.integer("KAFKA_REPLICATION", 1, 1, 7)
    postgres_host, postgres_port = _postgres_hosts(env)
    return Settings(
        postgres_host=postgres_host,
        postgres_port=postgres_port,
        postgres_user=env.text("POSTGRES_USER", "orders"),
        postgres_password=env.raw("POSTGRES_PASSWORD", "orders"),
        postgres_db=env.text("POSTGRES_DB", "orders"),
        postgres_sslmode=env.choice("POSTGRES_SSLMODE", "prefer", _SSLMODES, upper=False),
        postgres_sslrootcert=env.file("POSTGRES_SSLROOTCERT"),
        postgres_params=tuple(sorted((k, v) for k, v in url.items() if k not in _URL_PARTS)),
        postgres_read_params=tuple(sorted(read_url.items())),
        postgres_pool_size=env.integer("POSTGRES_POOL_SIZE", 4, 1, 100),
        miss_queries=env.integer("MISS_QUERIES", 1, 1, 100),
        kafka_brokers=env.text("KAFKA_BROKERS", "localhost:9092"),
        kafka_topic=topic,
        kafka_dlq_topic=env.text("KAFKA_DLQ_TOPIC", f"{topic}.dlq", _NAME),
        kafka_group=env.text("KAFKA_GROUP", "orders-service", _NAME),
        kafka_partitions=env.integer("KAFKA_PARTITIONS", 6, 1, 1000),
        kafka_replication=replication,
        kafka_min_insync_replicas=env.integer(
            "KAFKA_MIN_INSYNC_REPLICAS", max(1, replication - 1), 1, replication
        ),
        kafka_session_timeout_ms=env.integer(
            "KAFKA_SESSION_TIMEOUT_MS", DEFAULT_SESSION_TIMEOUT_MS, 6_000, 300_000
        ),
        kafka_security=_kafka_security(env),
        kafka_properties=_kafka_properties(env),
        ingest_batch_size=env.integer("INGEST_BATCH_SIZE", 5000, 1, 100_000),
        ingest_batch_wait_ms=env.integer("INGEST_BATCH_WAIT_MS", 50, 1, 60_000),
        unknown_fields=_unknown_fields(env),
        cache_size=cache_size,
        cache_bytes=env.integer(
            "CACHE_BYTES", max(1 << 20, cache_size * BYTES_PER_CACHED_ORDER), 1 << 20, 1 << 40
        ),
        cache_name=env.text("CACHE_NAME", "order-service-cache", _NAME),
        http_host=env.text("HTTP_HOST", "127.0.0.1"),
        http_port=env.integer("HTTP_PORT", 8082, 1, 65535),
        http_workers=env.integer_or_auto("HTTP_WORKERS", 1, 64),
        metrics_dir=env.directory("METRICS_DIR", DEFAULT_METRICS_DIR),
        metrics_port=env.integer("METRICS_PORT", 0, 0, 65535),
        metrics_host=env.text("METRICS_HOST", "127.0.0.1"),
        recent_orders=env.choice("RECENT_ORDERS", "ON", ("ON", "OFF")) == "ON",
        recent_orders_token=env.raw("RECENT_ORDERS_TOKEN", "").strip(),
        migrations_dir=env.text("MIGRATIONS_DIR", str(_REPO_ROOT / "migrations")),
        web_dir=env.text("WEB_DIR", str(_REPO_ROOT / "web")),
        log_level=env.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
        log_format=env.choice("LOG_FORMAT", "TEXT", ("TEXT", "JSON")),
    )
