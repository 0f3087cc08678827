"""A small migration runner over plain SQL files: `NNNN_name.up.sql` / `NNNN_name.down.sql`.

Each step runs in its own transaction together with the version bookkeeping (PostgreSQL DDL
is transactional), so a failed step leaves the schema exactly at the previous version; a
transaction-level advisory lock keeps two runners from interleaving.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.errors import ConfigError, MigrationError, StoreMisconfigured
from service.store.db import MIGRATE_HINT, Connection, connect, translated_errors

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d+)_([a-z0-9_]+)\.(up|down)\.sql$")
_LOCK_KEY = 0x6F72646572  # "order"

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up: Path
    down: Path


def discover(directory: Path) -> list[Migration]:
    """The migrations in `directory`, by version; each must have both an up and a down file."""
    if not directory.is_dir():
        raise ConfigError(f"Config 'MIGRATIONS_DIR' has value '{directory}'. Not a directory.")
    found: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in directory.iterdir():
        match = _FILE.match(path.name)
        if match is None:
            continue
        version = int(match[1])
        names[version] = match[2]
        found.setdefault(version, {})[match[3]] = path
    migrations = []
    for version in sorted(found):
        files = found[version]
        if set(files) != {"up", "down"}:
            raise ConfigError(f"Migration {version:04d} in '{directory}' lacks an up or down file.")
        migrations.append(Migration(version, names[version], files["up"], files["down"]))
    return migrations


def current_version(conn: Connection) -> int:
    """The newest applied version, 0 when none is."""
    with translated_errors():
        conn.execute(_BOOKKEEPING)
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        conn.commit()
    assert row is not None
    return int(str(row[0]))


def require_current(settings: Settings) -> None:
    """Before consuming or serving: the database answers and its schema is this build's."""
    with connect(settings) as conn:
        check_current(conn, Path(settings.migrations_dir))


def check_current(conn: Connection, directory: Path) -> None:
    """Raise StoreMisconfigured, saying how to fix it, unless every migration in `directory`
    is applied. Reads only: a service must not create tables as a side effect of a check."""
    latest = max((m.version for m in discover(directory)), default=0)
    with translated_errors():
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        row = (
            conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
            if exists is not None and exists[0]
            else None
        )
        conn.rollback()
    version = int(str(row[0])) if row is not None else 0
    if version < latest:
        raise StoreMisconfigured(
            f"The database {conn.info.dbname!r} is at schema version {version} and this build "
            f"needs {latest}: {MIGRATE_HINT}."
        )


def _step(
    conn: Connection,
    sql: str,
    bookkeeping: str,
    params: tuple[object, ...],
) -> None:
    with translated_errors(), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(sql.encode())
        conn.execute(bookkeeping.encode(), params)


def up(conn: Connection, directory: Path) -> list[int]:
    """Apply every pending migration; return the versions applied."""
    applied = []
    start = current_version(conn)
    for migration in discover(directory):
        if migration.version <= start:
            continue
        log.info("applying migration %04d %s", migration.version, migration.name)
        _step(
            conn,
            migration.up.read_text(),
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
        applied.append(migration.version)
    return applied


def down(conn: Connection, directory: Path, steps: int) -> list[int]:
    """Revert the newest `steps` applied migrations; return the versions reverted."""
    reverted = []
    by_version = {m.version: m for m in discover(directory)}
    for _ in range(steps):
        version = current_version(conn)
        if version == 0:
            break
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"The database is at schema version {version}, which has no down file in "
                f"{directory}: revert it with the build that applied it."
            )
        log.info("reverting migration %04d %s", migration.version, migration.name)
        _step(
            conn,
            migration.down.read_text(),
            "DELETE FROM schema_migrations WHERE version = %s",
            (version,),
        )
        reverted.append(version)
    return reverted
