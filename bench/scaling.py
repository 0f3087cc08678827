"""Scaling benchmark: ingest orders/s with 1, 2 and 3 consumer processes in one group, reading
the same preloaded topic (KAFKA_PARTITIONS, 6 by default), and where the CPU went meanwhile.

Each run gets a new consumer group and an emptied database. The rate is counted only once every
consumer holds partitions (the group is stable), until the last order is stored. CPU time is
read from /proc for the consumers, the PostgreSQL processes serving them (their backends plus
WAL writer, checkpointer and background writer) and the Kafka broker, and set against the
machine's busy time: the consumers' share says whether Python or the database bounds ingest.
Its ceiling is perfect scaling, n times one consumer's rate.

    python -m bench.scaling [--quick]
"""

import argparse
import os
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient

from bench import cli
from bench.common import REPO, log, result
from bench.preload import cache_region, check_alive, consumer, count_orders, preloaded, wait_stored
from service.config import Settings
from service.store.rows import TABLES

CONSUMERS = (1, 2, 3)
_TICKS = os.sysconf("SC_CLK_TCK")
_KAFKA_PIDFILE = Path(os.environ.get("ORDERS_STATE_DIR", REPO / ".local")) / "kafka/kafka.pid"
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


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    stored: int
    consumers: list[float]
    postgres: float
    kafka: float
    busy: float


def kafka_pid() -> int | None:
    try:
        return int(_KAFKA_PIDFILE.read_text())
    except (OSError, ValueError):
        return None


def postgres_pids(conn: psycopg.Connection[tuple[object, ...]], database: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE (datname = %s AND pid <> pg_backend_pid()) OR backend_type = ANY(%s)",
        (database, list(_PG_HELPERS)),
    ).fetchall()
    return [int(str(pid)) for (pid,) in rows]


def sample(
    conn: psycopg.Connection[tuple[object, ...]],
    database: str,
    processes: list[subprocess.Popen[bytes]],
) -> Sample:
    broker = kafka_pid()
    return Sample(
        at=time.perf_counter(),
        stored=count_orders(conn),
        consumers=[cpu_seconds(p.pid) for p in processes],
        postgres=sum(cpu_seconds(pid) for pid in postgres_pids(conn, database)),
        kafka=cpu_seconds(broker) if broker else 0.0,
        busy=machine_busy_seconds(),
    )


def group_is_stable(admin: AdminClient, group: str, members: int) -> bool:
    """Whether `members` consumers each hold at least one partition."""
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    held = [m.assignment.topic_partitions for m in description.members]
    return len(held) == members and all(held)


def run_consumers(
    settings: Settings, env: dict[str, str], count: int, total: int
) -> dict[str, Any]:
    """`count` consumer processes in a new group, filling one cache region as the consumer of
    `python -m service run` does, until `total` orders are stored."""
    group = f"{settings.kafka_group}-{count}"
    run_env = {**env, "KAFKA_GROUP": group}
    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers})
    with (
        psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn,
        ExitStack() as stack,
    ):
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        stack.enter_context(cache_region(settings))
        processes = [stack.enter_context(consumer(run_env)) for _ in range(count)]
        while not group_is_stable(admin, group, count):
            check_alive(processes)
            time.sleep(0.1)
        first = sample(conn, settings.postgres_db, processes)
        wait_stored(conn, processes, total)
        last = sample(conn, settings.postgres_db, processes)
    seconds = last.at - first.at
    consumer_cores = [
        (b - a) / seconds for a, b in zip(first.consumers, last.consumers, strict=True)
    ]
    return {
        "orders_per_s": (last.stored - first.stored) / seconds,
        "counted_orders": last.stored - first.stored,
        "seconds": seconds,
        "consumer_cores": consumer_cores,
        "postgres_cores": (last.postgres - first.postgres) / seconds,
        "kafka_cores": (last.kafka - first.kafka) / seconds,
        "machine_busy_cores": (last.busy - first.busy) / seconds,
    }


def figures(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    one = runs[CONSUMERS[0]]["orders_per_s"]
    out: dict[str, Any] = {}
    for count, run in runs.items():
        out[f"ingest_{count}_consumers"] = {
            "value": round(run["orders_per_s"]),
            "unit": "orders/s",
            "ceiling": round(count * one),
            "ceiling_name": f"{count} x one consumer",
            "ratio": round(run["orders_per_s"] / (count * one), 3),
            "counted_orders": run["counted_orders"],
            "seconds": round(run["seconds"], 2),
            "consumer_cores": [round(c, 2) for c in run["consumer_cores"]],
            "postgres_cores": round(run["postgres_cores"], 2),
            "kafka_cores": round(run["kafka_cores"], 2),
            "machine_busy_cores": round(run["machine_busy_cores"], 2),
        }
    return out


def measure(quick: bool) -> dict[str, Any]:
    """Preload once; consume it with 1, 2 and 3 consumers, each in its own group."""
    data = preloaded(60_000 if quick else 200_000, database="orders_bench_scaling")
    runs: dict[int, dict[str, Any]] = {}
    for count in CONSUMERS:
        log(f"consuming {len(data.orders):,} orders with {count} consumer process(es)")
        runs[count] = run_consumers(data.settings, data.env, count, len(data.orders))
        cores = " + ".join(f"{c:.2f}" for c in runs[count]["consumer_cores"])
        run = runs[count]
        log(
            f"{count}: {run['orders_per_s']:,.0f} orders/s; cores: consumers {cores}, "
            f"PostgreSQL {run['postgres_cores']:.2f}, Kafka {run['kafka_cores']:.2f}, "
            f"machine {run['machine_busy_cores']:.2f} of {os.cpu_count()}"
        )
    parameters = {
        "orders": len(data.orders),
        "partitions": data.settings.kafka_partitions,
        "batch_size": int(data.env["INGEST_BATCH_SIZE"]),
        "consumers": list(CONSUMERS),
    }
    return result("scaling", parameters, figures(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60,000 orders, for development")
    cli.run("scaling", parser, lambda a: measure(a.quick))


if __name__ == "__main__":
    main()
