"""The service's exceptions: one shallow hierarchy, each message naming the bad value or limit.

Library errors (psycopg, confluent-kafka) are translated into these at one boundary each:
`service.store.db` for PostgreSQL, `service.ingest.kafka` for Kafka.
"""


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class OperatorError(ServiceError):
    """Something only an operator can fix (a setting, credentials, the schema): the process
    stops with OPERATOR_ERROR_EXIT and is not restarted, since running again cannot help."""


# sysexits.h's EX_CONFIG: tells the runner (and any supervisor) not to restart the process.
OPERATOR_ERROR_EXIT = 78


class ConfigError(OperatorError):
    """A setting is missing or has a value that cannot be used."""


class StoreUnavailable(ServiceError):
    """PostgreSQL cannot be reached or refused the connection; retrying later may succeed."""


class StoreMisconfigured(OperatorError):
    """PostgreSQL refused us for a reason only an operator can fix (credentials, a missing
    database, schema or privilege); retrying cannot help, so it is reported, not retried."""


# What a request meets when PostgreSQL cannot answer it now, whether an outage or a refusal an
# operator must fix: either way the answer is 503 with the message, and the worker serves on.
STORE_CANNOT_ANSWER = (StoreUnavailable, StoreMisconfigured)


class StoreRejected(ServiceError):
    """PostgreSQL refused the data itself; retrying the same rows will fail again."""


class CopyFormatError(ServiceError):
    """A binary COPY from PostgreSQL is not the rows of two fields its query asked for, or it
    ended before its trailer."""


class MigrationError(OperatorError):
    """The migration files and the database's schema version do not fit together."""


class CacheError(ServiceError):
    """The shared-memory cache region is missing, foreign, or in use by another live service."""


class CacheKeyError(ServiceError):
    """A key the cache cannot hold: empty, longer than its key slots, or not ASCII."""


class BrokerUnavailable(ServiceError):
    """Kafka cannot be reached or refused an operation."""


class ConsumerCrashLoop(ServiceError):
    """The consumer process keeps dying soon after each restart; restarting it more is futile."""


class ReplayRefused(OperatorError):
    """The consumer group's offsets cannot be moved as asked: the group has active members, or
    the topic does not exist."""


class ConsumerStopped(OperatorError):
    """The consumer stopped on an operator error; restarting it cannot help."""
