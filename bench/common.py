"""What every benchmark shares: progress lines, databases created, migrated and dropped (the
tests' fixtures use them too), machine facts, the
result dict every `measure(quick)` returns, and writing it to bench/results/<name>-latest.json.

A result is `{benchmark, when, machine, parameters, figures}`; each figure is
`{value, unit}` plus, where they apply, `ceiling`, `ceiling_name`, `ratio`, `bar` and `met`.
"""

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import confluent_kafka
import granian
import psycopg
from psycopg import sql

from service.config import Settings, load_settings
from service.model import Order, encode_order
from service.store.copy_in import CopyBatch
from service.store.writer import OrderWriter

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def write_orders(writer: OrderWriter, orders: Sequence[Order]) -> list[Order]:
    """Store `orders` in one transaction the way the consumer does; return the new ones. For
    the benchmarks' and the tests' fixtures, which start from orders, not messages."""
    batch = CopyBatch.of((order, encode_order(order)) for order in orders)
    return [order for order, _ in writer.write_batch(batch)]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _admin_conninfo(base: dict[str, str]) -> str:
    return load_settings({**base, "POSTGRES_DB": "postgres"}).postgres_conninfo


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop(conn: psycopg.Connection[Any], name: str, tries: int = 20) -> None:
    """DROP DATABASE … WITH (FORCE), retried for a while: it fails while an autovacuum worker
    (a superuser process, which our role may not terminate) is on the database."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for _ in range(tries - 1):
        try:
            conn.execute(drop)
        except psycopg.errors.InsufficientPrivilege:
            time.sleep(0.5)
        else:
            return
    conn.execute(drop)


def create_database(base: dict[str, str], name: str, *, migrate: bool = True) -> Settings:
    """The database `name` created on the server `base` names (migrated unless asked not to);
    settings pointing at it. Shared by the benchmarks and the tests' fixtures."""
    with psycopg.connect(_admin_conninfo(base), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {**base, "POSTGRES_DB": name}
    if migrate:
        subprocess.run(
            [sys.executable, "-m", "service", "migrate", "up"],
            env=env,
            check=True,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
    return load_settings(env)


def drop_database(base: dict[str, str], name: str) -> None:
    """Drop the database `name` on the server `base` names, if it exists."""
    with psycopg.connect(_admin_conninfo(base), autocommit=True) as conn:
        _drop(conn, name)


def fresh_database(base: dict[str, str], name: str) -> Settings:
    """A new, migrated database `<name>_<pid>` for this process; return settings pointing at it.

    Named by process so that benchmarks run at the same time against one server (by several
    people on a shared machine) never drop each other's data. The databases of `name` left by
    processes that have exited, and this process's own, are dropped first, so at most one set
    per running benchmark process stays behind.
    """
    with psycopg.connect(_admin_conninfo(base), autocommit=True) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (f"{name}_",)
        ).fetchall()
        for (existing,) in names:
            pid = str(existing).removeprefix(f"{name}_")
            if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                _drop(conn, str(existing))
    return create_database(base, f"{name}_{os.getpid()}")


def _first_match(path: str, pattern: str) -> str:
    try:
        match = re.search(pattern, Path(path).read_text(), re.MULTILINE)
    except OSError:
        return "unknown"
    return match.group(1).strip() if match else "unknown"


@cache
def machine() -> dict[str, Any]:
    """Facts that decide what the figures mean: hardware, OS and the versions under test."""
    with psycopg.connect(_admin_conninfo(dict(os.environ))) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(
            int(_first_match("/proc/meminfo", r"^MemTotal:\s+(\d+) kB")) / 2**20, 1
        ),
        "cpu": _first_match("/proc/cpuinfo", r"^model name\s*:(.*)$"),
        "os": _first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)'),
        "python": platform.python_version(),
        "postgresql": str(version[0]).split()[0] if version else "unknown",
        "postgresql_shared_buffers": str(shared_buffers[0]) if shared_buffers else "unknown",
        # The broker the infra scripts run; its version is pinned in the Maven project.
        "kafka": _first_match(str(REPO / "infra/kafka/pom.xml"), r"<kafka.version>(.*)</"),
        "librdkafka": confluent_kafka.libversion()[0],
        "granian": granian.__version__,
    }


def result(benchmark: str, parameters: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """The result dict every benchmark's `measure` returns."""
    return {
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": parameters,
        "figures": figures,
    }


def save_result(name: str, outcome: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-latest.json"
    path.write_text(json.dumps(outcome, indent=2) + "\n")
    log(f"wrote {path.relative_to(REPO)}")
    return path
