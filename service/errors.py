"""The service's exceptions: one shallow hierarchy, each message naming the bad value or limit.

Library errors (psycopg, confluent-kafka) are translated into these at one boundary each:
`service.store.db` for PostgreSQL, `service.ingest.kafka` for Kafka.
"""


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(ServiceError):
    """A setting is missing or has a value that cannot be used."""


class StoreUnavailable(ServiceError):
    """PostgreSQL cannot be reached or refused the connection; retrying later may succeed."""


class StoreMisconfigured(ServiceError):
    """PostgreSQL refused us for a reason only an operator can fix (credentials, a missing
    database, schema or privilege); retrying cannot help, so it is reported, not retried."""


class StoreRejected(ServiceError):
    """PostgreSQL refused the data itself; retrying the same rows will fail again."""


class MigrationError(ServiceError):
    """The migration files and the database's schema version do not fit together."""


class CacheError(ServiceError):
    """The shared-memory cache region is missing, foreign, or in use by another live service."""


class CacheKeyError(ServiceError):
    """A key the cache cannot hold: empty, longer than its key slots, or not ASCII."""


class BrokerUnavailable(ServiceError):
    """Kafka cannot be reached or refused an operation."""
