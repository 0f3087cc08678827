"""Connections to PostgreSQL and the one place psycopg errors become service errors.

Callers see `StoreUnavailable` (retry later: the server is down, restarting or unreachable)
or `StoreRejected` (the data itself was refused: retrying the same rows cannot help).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from service.config import Settings
from service.errors import StoreRejected, StoreUnavailable

Connection = psycopg.Connection[tuple[Any, ...]]
Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]

CONNECT_TIMEOUT_S = 5

# SQLSTATE classes that describe the rows, not the server: 22 data exception,
# 23 integrity constraint violation.
_DATA_CLASSES = ("22", "23")
# libpq's words for a TLS failure that only a setting can fix, not a retry.
_TLS_FAILURES = (
    "certificate verify failed",
    "does not match host name",
    "root certificate file",
    "server does not support SSL",
)


def translate(exc: psycopg.Error) -> StoreUnavailable | StoreRejected:
    """Map a psycopg error to the service error that tells the caller what to do next."""
    sqlstate = exc.sqlstate or ""
    if sqlstate[:2] in _DATA_CLASSES:
        return StoreRejected(f"PostgreSQL rejected the data: {exc.diag.message_primary or exc}")
    text = str(exc).strip()
    if any(words in text for words in _TLS_FAILURES):
        return StoreUnavailable(
            f"PostgreSQL TLS failed: {text}. Check 'POSTGRES_SSLROOTCERT' (the CA that signed "
            "the server's certificate), 'POSTGRES_SSLMODE', and that 'POSTGRES_HOST' is a name "
            "the certificate is for."
        )
    return StoreUnavailable(f"PostgreSQL is unavailable: {str(exc).strip() or type(exc).__name__}")


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise psycopg errors in the block as StoreUnavailable or StoreRejected."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc


# Every connection and pool: UTC, so timestamps read back exactly as they were stored.
_SESSION_OPTIONS = "-c timezone=UTC"


def connect(settings: Settings) -> Connection:
    """A synchronous connection with the service's options."""
    with translated_errors():
        return psycopg.connect(
            settings.postgres_conninfo,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=_SESSION_OPTIONS,
        )


# A read the caller gave up on (reader.READ_TIMEOUT_S) is left running, holding its pooled
# connection: the server ends it after this, and TCP gives up on a peer that stopped
# acknowledging (tcp_user_timeout) or answering keepalives, instead of the kernel's 15 minutes.
READ_STATEMENT_TIMEOUT_MS = 5000
_DEAD_PEER_DETECTION = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def async_pool(settings: Settings) -> Pool:
    """The API workers' pool; opened by the caller."""
    return AsyncConnectionPool(
        min_size=1,
        max_size=settings.postgres_pool_size,
        conninfo=settings.postgres_conninfo,
        # Reads only: autocommit saves a COMMIT round trip per query. Broken connections are
        # handled where a read fails (reader._query), not by a check on every checkout.
        kwargs={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"{_SESSION_OPTIONS} -c statement_timeout={READ_STATEMENT_TIMEOUT_MS}",
            "autocommit": True,
            **_DEAD_PEER_DETECTION,
        },
        open=False,
    )
