"""CPU time of processes from /proc: a consumer, the PostgreSQL processes serving a database,
the whole machine. What the ingest and scaling benchmarks set against the orders they count."""

import os
from pathlib import Path

import psycopg

_TICKS = os.sysconf("SC_CLK_TCK")
_PG_HELPERS = ("walwriter", "checkpointer", "background writer")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU time every core spent on anything but idle and iowait, since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / _TICKS


def postgres_cpu_seconds(conn: psycopg.Connection[tuple[object, ...]], database: str) -> float:
    """CPU time so far of the backends serving `database` (but `conn`'s) and of the WAL writer,
    checkpointer and background writer: the database's share of an ingest."""
    return sum(cpu_seconds(pid) for pid in _postgres_pids(conn, database))


def _postgres_pids(conn: psycopg.Connection[tuple[object, ...]], database: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE (datname = %s AND pid <> pg_backend_pid()) OR backend_type = ANY(%s)",
        (database, list(_PG_HELPERS)),
    ).fetchall()
    return [int(str(pid)) for (pid,) in rows]
