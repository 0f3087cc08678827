"""Ingest benchmark: orders/s from a preloaded topic to committed rows, against its ceiling,
`psql \\copy` of the same rows from files into the same schema, measured in the same run.

    python -m bench.ingest [--quick] [--orders 200000] [--batch-size 5000]
"""

import argparse
import csv
import os
import random
import subprocess
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer

from bench import processes, report
from bench.common import fresh_database, log, result, save_result
from bench.processes import exit_on_sigterm
from service.config import Settings
from service.ingest.kafka import ensure_topics, producer_config
from service.model import Order, encode_order
from service.produce import random_order
from service.store.rows import BINARY_TYPES, TABLES, Row, rows_by_table

BATCH_SIZE = 5000
BAR_ORDERS_PER_S = 15_000
BAR_RATIO = 0.4


@dataclass(frozen=True, slots=True)
class Preloaded:
    """A fresh database, a topic holding `orders`, and the environment pointing at both."""

    settings: Settings
    env: dict[str, str]
    orders: list[Order]


def preload(settings: Settings, orders: list[Order]) -> None:
    ensure_topics(settings)
    producer = Producer({**producer_config(settings), "linger.ms": 50, "batch.size": 1_000_000})
    for order in orders:
        while True:
            try:
                producer.produce(settings.kafka_topic, encode_order(order), order.order_uid)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush()


def count_orders(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT count(*) FROM orders").fetchone()
    return int(str(row[0])) if row else 0


def preloaded(
    count: int, batch_size: int = BATCH_SIZE, database: str = "orders_bench"
) -> Preloaded:
    """`count` random orders in a new topic, and a fresh database for the consumer."""
    run = uuid.uuid4().hex[:8]
    base = {
        **os.environ,
        "KAFKA_TOPIC": f"bench-{run}",
        "KAFKA_GROUP": f"bench-{run}",
        "CACHE_NAME": f"bench-{run}",
        "INGEST_BATCH_SIZE": str(batch_size),
        "LOG_LEVEL": "WARNING",
    }
    settings = fresh_database(base, database)
    rng = random.Random(7)
    orders = [random_order(rng) for _ in range(count)]
    items = sum(len(o.items) for o in orders)
    log(f"preloading {count:,} orders ({items:,} items) into {settings.kafka_topic}")
    preload(settings, orders)
    return Preloaded(settings, {**base, "POSTGRES_DB": settings.postgres_db}, orders)


def consumer(env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The real consumer process (`python -m service consume`) for the duration of the block."""
    return processes.started([*processes.SERVICE, "consume"], env)


def wait_stored(
    conn: psycopg.Connection[tuple[object, ...]], process: subprocess.Popen[bytes], at_least: int
) -> int:
    """Poll until at least `at_least` orders are stored; return the count seen."""
    while (stored := count_orders(conn)) < at_least:
        if process.poll() is not None:
            raise RuntimeError(f"consumer exited with {process.returncode}")
        time.sleep(0.05)
    return stored


def measure_consumer(settings: Settings, env: dict[str, str], total: int) -> dict[str, float]:
    """Run the real consumer process; time from its first committed batch to the last."""
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        started_at = time.perf_counter()
        with consumer(env) as process:
            first_count = wait_stored(conn, process, 1)
            first_at = time.perf_counter()
            wait_stored(conn, process, total)
            done = time.perf_counter()
    return {
        "orders_per_s": (total - first_count) / (done - first_at),
        "seconds_including_start": done - started_at,
    }


def csv_value(value: object) -> object:
    """A value as `psql \\copy … (FORMAT csv)` reads it."""
    return value.isoformat() if isinstance(value, datetime) else value


def copy_command(table: str, path: Path, file_format: str) -> list[str]:
    columns = ", ".join(TABLES[table])
    return ["-c", f"\\copy {table} ({columns}) FROM '{path}' WITH (FORMAT {file_format})"]


def write_csv(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as handle:
        # Quoted, so an empty string stays an empty string rather than NULL.
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(
            [csv_value(v) for v in row] for row in rows
        )


def export_binary(conn: psycopg.Connection[Any], table: str, path: Path) -> None:
    """The table's rows as stored by the consumer's run, in PostgreSQL's binary COPY format."""
    statement = f"COPY {table} ({', '.join(TABLES[table])}) TO STDOUT (FORMAT BINARY)"
    with path.open("wb") as out, conn.cursor() as cur, cur.copy(statement) as copy:
        for block in copy:
            out.write(block)


def measure_ceiling(settings: Settings, orders: list[Order], workdir: Path) -> float:
    """`psql \\copy` of the same rows, one file per table, in one transaction: CSV, except
    the tables the writer sends in binary format (the bodies), exported from the consumer's
    run in that format."""
    commands = []
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        for table, rows in rows_by_table(orders).items():
            if table in BINARY_TYPES:
                path = workdir / f"{table}.bin"
                export_binary(conn, table, path)
                commands += copy_command(table, path, "binary")
            else:
                path = workdir / f"{table}.csv"
                write_csv(path, rows)
                commands += copy_command(table, path, "csv")
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.execute("VACUUM ANALYZE")
    env = {**os.environ, "PGPASSWORD": settings.postgres_password}
    started = time.perf_counter()
    subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-1",
            "-h",
            settings.postgres_host,
            "-p",
            str(settings.postgres_port),
            "-U",
            settings.postgres_user,
            "-d",
            settings.postgres_db,
            *commands,
        ],
        env=env,
        check=True,
    )
    return len(orders) / (time.perf_counter() - started)


def figures(ours: dict[str, float], ceiling: float) -> dict[str, Any]:
    ratio = ours["orders_per_s"] / ceiling
    return {
        "ingest": {
            "value": round(ours["orders_per_s"]),
            "unit": "orders/s",
            "ceiling": round(ceiling),
            "ceiling_name": "psql \\copy, same rows",
            "ratio": round(ratio, 3),
            "bar": f">= {BAR_ORDERS_PER_S:,} orders/s and >= {BAR_RATIO:.0%}",
            "met": ours["orders_per_s"] >= BAR_ORDERS_PER_S and ratio >= BAR_RATIO,
        },
        "ingest_seconds_including_start": {
            "value": round(ours["seconds_including_start"], 2),
            "unit": "s",
        },
    }


def measure(
    quick: bool, *, orders: int | None = None, batch_size: int = BATCH_SIZE
) -> dict[str, Any]:
    """Preload the topic, consume it with the real consumer, then the ceiling on the same rows."""
    data = preloaded(orders or (20_000 if quick else 200_000), batch_size)
    log("consuming with the real consumer process")
    ours = measure_consumer(data.settings, data.env, len(data.orders))
    log(f"consumer: {ours['orders_per_s']:,.0f} orders/s; now the psql \\copy ceiling")
    with tempfile.TemporaryDirectory() as workdir:
        ceiling = measure_ceiling(data.settings, data.orders, Path(workdir))
    parameters = {
        "orders": len(data.orders),
        "items": sum(len(o.items) for o in data.orders),
        "batch_size": batch_size,
    }
    return result("ingest", parameters, figures(ours, ceiling))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 orders, for development")
    parser.add_argument("--orders", type=int, default=None, help="default 200,000")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    exit_on_sigterm()
    outcome = measure(args.quick, orders=args.orders, batch_size=args.batch_size)
    save_result("ingest", outcome)
    print(report.table([outcome]))


if __name__ == "__main__":
    main()
