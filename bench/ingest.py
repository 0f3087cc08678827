"""Ingest benchmark: orders/s from a preloaded topic to committed rows with the cache filled,
against its ceiling, `psql \\copy` of the same rows from files into the same schema, measured
in the same run; beside it a second ceiling, the same rows loaded by `psql` in PostgreSQL's
binary COPY format for every table (nothing to parse), and the CPU the consumer and
PostgreSQL spent per order.

The two alternate, ROUNDS times each (the consumer in a new group, over a new database, each
time), and the best run of each counts: single runs of either on the shared machine moved by a
sixth from one run to the next (docs/performance.md, "The consumer's pipeline").

    python -m bench.ingest [--quick] [--orders 200000] [--batch-size 5000]
"""

import argparse
import csv
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import cli
from bench.common import fresh_database, log, result
from bench.cpu import cpu_seconds, postgres_cpu_seconds
from bench.preload import (
    BATCH_SIZE,
    DATABASE,
    cache_region,
    consumer,
    preloaded,
    wait_stored,
)
from service.config import Settings
from service.model import Document, Order, encode_order
from service.store.rows import (
    BINARY_TYPES,
    TABLES,
    Row,
    delivery_row,
    item_rows,
    order_row,
    payment_row,
)

BAR_ORDERS_PER_S = 15_000
BAR_RATIO = 0.85
ROUNDS = 3


def rows_by_table(documents: Iterable[Document]) -> dict[str, list[Row]]:
    r"""Every row the orders make, grouped by table, in `TABLES` order: what the `psql` COPY
    of the ceiling is fed."""
    tables: dict[str, list[Row]] = {name: [] for name in TABLES}
    orders_rows, deliveries, payments, items, bodies = tables.values()
    for order, body in documents:
        orders_rows.append(order_row(order))
        deliveries.append(delivery_row(order))
        payments.append(payment_row(order))
        items.extend(item_rows(order))
        bodies.append((order.order_uid, body))
    return tables


def measure_consumer(settings: Settings, env: dict[str, str], total: int) -> dict[str, float]:
    """Run the real consumer process, filling a cache region as in production; time from its
    first committed batch to the last, and count the CPU the consumer and PostgreSQL spent."""
    with (
        psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn,
        cache_region(settings),
    ):
        started_at = time.perf_counter()
        with consumer(env) as process:
            first_count = wait_stored(conn, [process], 1)
            first_at = time.perf_counter()
            first_cpu = cpu_seconds(process.pid), postgres_cpu_seconds(conn, settings.postgres_db)
            wait_stored(conn, [process], total)
            done = time.perf_counter()
            last_cpu = cpu_seconds(process.pid), postgres_cpu_seconds(conn, settings.postgres_db)
    counted = total - first_count
    return {
        "orders_per_s": counted / (done - first_at),
        "seconds_including_start": done - started_at,
        "consumer_us_per_order": (last_cpu[0] - first_cpu[0]) / counted * 1e6,
        "postgres_us_per_order": (last_cpu[1] - first_cpu[1]) / counted * 1e6,
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


def ceiling_commands(settings: Settings, orders: list[Order], workdir: Path) -> list[str]:
    """psql's `\\copy` commands for the same rows, one file per table, written to `workdir`:
    CSV, except the tables the writer sends in binary format (the bodies), exported from the
    consumer's run in that format."""
    commands = []
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        for table, rows in rows_by_table((o, encode_order(o)) for o in orders).items():
            if table in BINARY_TYPES:
                path = workdir / f"{table}.bin"
                export_binary(conn, table, path)
                commands += copy_command(table, path, "binary")
            else:
                path = workdir / f"{table}.csv"
                write_csv(path, rows)
                commands += copy_command(table, path, "csv")
    return commands


def binary_ceiling_commands(settings: Settings, workdir: Path) -> list[str]:
    """psql's `\\copy` commands loading every table from its binary COPY export of the
    consumer's run: the same rows, with nothing for PostgreSQL to parse but binary fields."""
    commands = []
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        for table in TABLES:
            path = workdir / f"{table}.all.bin"
            export_binary(conn, table, path)
            commands += copy_command(table, path, "binary")
    return commands


def run_ceiling(settings: Settings, commands: list[str], total: int) -> float:
    """The emptied tables filled by `psql -1` running `commands`: orders/s."""
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
    return total / (time.perf_counter() - started)


def measure_ceiling(settings: Settings, orders: list[Order], workdir: Path) -> float:
    """One run of the ceiling on the rows the consumer stored in `settings`' database."""
    return run_ceiling(settings, ceiling_commands(settings, orders, workdir), len(orders))


def figures(
    ours_runs: list[dict[str, float]], ceiling_runs: list[float], binary_runs: list[float]
) -> dict[str, Any]:
    ours = max(ours_runs, key=lambda run: run["orders_per_s"])
    ceiling = max(ceiling_runs)
    ratio = ours["orders_per_s"] / ceiling
    binary = max(binary_runs)
    return {
        "ingest": {
            "value": round(ours["orders_per_s"]),
            "unit": "orders/s",
            "ceiling": round(ceiling),
            "ceiling_name": f"psql \\copy, same rows, best of {len(ceiling_runs)}",
            "ratio": round(ratio, 3),
            "bar": f">= {BAR_ORDERS_PER_S:,} orders/s and >= {BAR_RATIO:.0%}",
            "met": ours["orders_per_s"] >= BAR_ORDERS_PER_S and ratio >= BAR_RATIO,
        },
        "ingest_to_binary_copy": {
            "value": round(ours["orders_per_s"]),
            "unit": "orders/s",
            "ceiling": round(binary),
            "ceiling_name": f"psql \\copy of every table in binary, best of {len(binary_runs)}",
            "ratio": round(ours["orders_per_s"] / binary, 3),
        },
        "ingest_consumer_cpu_per_order": {
            "value": round(ours["consumer_us_per_order"], 1),
            "unit": "µs",
        },
        "ingest_postgres_cpu_per_order": {
            "value": round(ours["postgres_us_per_order"], 1),
            "unit": "µs",
        },
        "ingest_seconds_including_start": {
            "value": round(ours["seconds_including_start"], 2),
            "unit": "s",
        },
    }


def measure(
    quick: bool, *, orders: int | None = None, batch_size: int = BATCH_SIZE
) -> dict[str, Any]:
    """Preload the topic, then alternately consume it with the real consumer (a new group over
    a new database each round) and load the same rows with the ceiling."""
    data = preloaded(orders or (20_000 if quick else 200_000), batch_size)
    total = len(data.orders)
    ours_runs: list[dict[str, float]] = []
    ceiling_runs: list[float] = []
    binary_runs: list[float] = []
    with tempfile.TemporaryDirectory() as workdir:
        commands: list[str] = []
        binary_commands: list[str] = []
        for round_no in range(1, (1 if quick else ROUNDS) + 1):
            env = {**data.env, "KAFKA_GROUP": f"{data.settings.kafka_group}-{round_no}"}
            settings = fresh_database(env, DATABASE)
            ours_runs.append(measure_consumer(settings, env, total))
            commands = commands or ceiling_commands(settings, data.orders, Path(workdir))
            binary_commands = binary_commands or binary_ceiling_commands(settings, Path(workdir))
            ceiling_runs.append(run_ceiling(settings, commands, total))
            binary_runs.append(run_ceiling(settings, binary_commands, total))
            log(
                f"round {round_no}: consumer {ours_runs[-1]['orders_per_s']:,.0f} orders/s "
                f"({ours_runs[-1]['consumer_us_per_order']:.1f} µs/order, PostgreSQL "
                f"{ours_runs[-1]['postgres_us_per_order']:.1f}), psql \\copy "
                f"{ceiling_runs[-1]:,.0f}, binary {binary_runs[-1]:,.0f} orders/s"
            )
    parameters = {
        "orders": total,
        "items": sum(len(o.items) for o in data.orders),
        "batch_size": batch_size,
        "consumer_runs": [round(run["orders_per_s"]) for run in ours_runs],
        "ceiling_runs": [round(run) for run in ceiling_runs],
        "binary_ceiling_runs": [round(run) for run in binary_runs],
    }
    return result("ingest", parameters, figures(ours_runs, ceiling_runs, binary_runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 orders, for development")
    parser.add_argument("--orders", type=int, default=None, help="default 200,000")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    cli.run(
        "ingest",
        parser,
        lambda a: measure(a.quick, orders=a.orders, batch_size=a.batch_size),
    )


if __name__ == "__main__":
    main()
