"""Connections to PostgreSQL and the one place psycopg errors become service errors.

Callers see `StoreUnavailable` (retry later: the server is down, restarting or unreachable),
`StoreMisconfigured` (an operator must act: wrong credentials, no such database, the schema
missing or a privilege not granted; the message says what to do) or `StoreRejected` (the data
itself was refused: retrying the same rows cannot help).
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from service.config import Settings
from service.errors import StoreMisconfigured, StoreRejected, StoreUnavailable

Connection = psycopg.Connection[tuple[Any, ...]]
Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]

CONNECT_TIMEOUT_S = 5

# SQLSTATE classes that describe the rows, not the server: 22 data exception,
# 23 integrity constraint violation.
_DATA_CLASSES = ("22", "23")
# Not a SQLSTATE: the key of TLS failures, which are the client's to fix.
_TLS = "TLS"
MIGRATE_HINT = "run `./dev migrate-up` (in a container: `python -m service migrate up`)"
# What an operator does about each SQLSTATE (exact code first, then its class): 28 invalid
# authorization, 3D no such database, 42 a missing table or column, or a privilege not granted.
_OPERATOR_FIXES = {
    "42501": "grant the role POSTGRES_USER the privilege, or connect as the schema's owner",
    "28": "check POSTGRES_USER and POSTGRES_PASSWORD",
    "3D": "check POSTGRES_DB, or create that database",
    "42": f"the schema is missing or older than this build: {MIGRATE_HINT}",
    _TLS: "check POSTGRES_SSLROOTCERT (the CA that signed the server's certificate), "
    "POSTGRES_SSLMODE, and that POSTGRES_HOST is a name the certificate is for",
}
# A failed connection carries no SQLSTATE (libpq reports the server's FATAL as text), so the
# server's own wording picks the fix. Messages are in English unless the server's lc_messages
# says otherwise; an unrecognised one stays StoreUnavailable, which is retried.
_CONNECT_FAILURES = {
    "password authentication failed": "28",
    "no pg_hba.conf entry": "28",
    "role .* does not exist": "28",
    "database .* does not exist": "3D",
    "permission denied for database": "42501",
    # libpq's own words for a TLS failure, which never reaches the server.
    "certificate verify failed": _TLS,
    "does not match host name": _TLS,
    "root certificate file": _TLS,
    "server does not support SSL": _TLS,
}


def _operator_fix(exc: psycopg.Error) -> str | None:
    sqlstate = exc.sqlstate
    if sqlstate is None and isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        sqlstate = next((c for p, c in _CONNECT_FAILURES.items() if re.search(p, text)), None)
    if sqlstate is None:
        return None
    return _OPERATOR_FIXES.get(sqlstate) or _OPERATOR_FIXES.get(sqlstate[:2])


# 25006 read_only_sql_transaction: the server no longer takes writes. With a primary and
# standbys that means the primary moved (a failover demoted this one, or the connection
# reached a standby): the caller reconnects and libpq finds the new primary.
READ_ONLY_TRANSACTION = "25006"


def translate(exc: psycopg.Error) -> StoreUnavailable | StoreMisconfigured | StoreRejected:
    """Map a psycopg error to the service error that tells the caller what to do next."""
    sqlstate = exc.sqlstate or ""
    if sqlstate == READ_ONLY_TRANSACTION:
        return StoreUnavailable(
            "PostgreSQL is read-only here (a standby, or a primary demoted by a failover); "
            "reconnecting to the server of POSTGRES_HOST that accepts writes"
        )
    if sqlstate[:2] in _DATA_CLASSES:
        return StoreRejected(f"PostgreSQL rejected the data: {exc.diag.message_primary or exc}")
    # The server's one-line message when there is one (str() adds the statement's text).
    reason = exc.diag.message_primary or " ".join(str(exc).split()) or type(exc).__name__
    fix = _operator_fix(exc)
    if fix is not None:
        return StoreMisconfigured(f"PostgreSQL refused the service: {reason}. To fix: {fix}.")
    return StoreUnavailable(f"PostgreSQL is unavailable: {reason}")


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise psycopg errors in the block as the service errors `translate` picks."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc


# Every connection and pool: UTC, so timestamps read back exactly as they were stored. Set
# once a connection is open, not in libpq's `options`, which PgBouncer before 1.20 (Debian's
# is 1.18) refuses and later ones pass on only if told to.
_SESSION_SETTINGS = "SET timezone TO 'UTC'"


def _with_session_settings(conn: Connection) -> Connection:
    conn.execute(_SESSION_SETTINGS)
    conn.commit()
    return conn


def connect(settings: Settings) -> Connection:
    """A synchronous connection to the primary (the host that accepts writes), with the
    service's session settings."""
    with translated_errors():
        return _with_session_settings(
            psycopg.connect(settings.postgres_primary_conninfo, connect_timeout=CONNECT_TIMEOUT_S)
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


def connect_for_reads(settings: Settings) -> Connection:
    """A synchronous connection to where reads go (POSTGRES_READ_URL, else as configured)."""
    with translated_errors():
        return _with_session_settings(
            psycopg.connect(settings.postgres_read_conninfo, connect_timeout=CONNECT_TIMEOUT_S)
        )


async def _configure_read(conn: AsyncConnection) -> None:
    await conn.execute(f"{_SESSION_SETTINGS}; SET statement_timeout = {READ_STATEMENT_TIMEOUT_MS}")


def async_pool(settings: Settings, *, primary: bool = False) -> Pool:
    """The API workers' pool of reads (`primary`: of the primary itself); opened by the caller."""
    return AsyncConnectionPool(
        min_size=1,
        max_size=settings.postgres_pool_size,
        conninfo=settings.postgres_primary_conninfo if primary else settings.postgres_read_conninfo,
        # Reads only: autocommit saves a COMMIT round trip per query. Broken connections are
        # handled where a read fails (reader._query_retrying), not by a check on every checkout.
        kwargs={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "autocommit": True,
            **_DEAD_PEER_DETECTION,
        },
        configure=_configure_read,
        open=False,
    )
