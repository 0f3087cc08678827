"""Ingest benchmark: orders/s from a preloaded topic to committed rows, against its ceiling,
`psql \\copy` of the same rows from files into the same schema, measured in the same run.

    python -m bench.ingest --orders 200000
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from bench.common import REPO, fresh_database, log, machine, save_result
from service.config import Settings
from service.ingest.kafka import ensure_topics, producer_config
from service.model import Order, encode_order
from service.produce import random_order
from service.store.rows import TABLES, rows_by_table


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


def measure_consumer(settings: Settings, env: dict[str, str], total: int) -> dict[str, float]:
    """Run the real consumer process; time from its first committed batch to the last."""
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "consume"],
            env=env,
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )
        try:
            first_at, first_count = 0.0, 0
            while (stored := count_orders(conn)) < total:
                if stored and not first_at:
                    first_at, first_count = time.perf_counter(), stored
                if process.poll() is not None:
                    raise RuntimeError(f"consumer exited with {process.returncode}")
                time.sleep(0.05)
            done = time.perf_counter()
        finally:
            process.terminate()
            process.wait(60)
    return {
        "orders_per_s": (total - first_count) / (done - first_at),
        "seconds_including_start": done - started,
    }


def measure_ceiling(settings: Settings, orders: list[Order], workdir: Path) -> float:
    """`psql \\copy` of the same rows, one file per table, in one transaction."""
    tables = rows_by_table(orders)
    commands = []
    for table, rows in tables.items():
        path = workdir / f"{table}.csv"
        with path.open("w", newline="") as handle:
            # Quoted, so an empty string stays an empty string rather than NULL.
            csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(
                [v.isoformat() if isinstance(v, datetime) else v for v in row] for row in rows
            )
        commands += [
            "-c",
            f"\\copy {table} ({', '.join(TABLES[table])}) FROM '{path}' WITH (FORMAT csv)",
        ]
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE orders, deliveries, payments, items")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=None, help="default 200,000")
    parser.add_argument("--quick", action="store_true", help="20,000 orders, for development")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    args.orders = args.orders or (20_000 if args.quick else 200_000)
    run = uuid.uuid4().hex[:8]
    base = {
        **os.environ,
        "KAFKA_TOPIC": f"bench-{run}",
        "KAFKA_GROUP": f"bench-{run}",
        "CACHE_NAME": f"bench-{run}",
        "INGEST_BATCH_SIZE": str(args.batch_size),
        "LOG_LEVEL": "WARNING",
    }
    settings = fresh_database(base, "orders_bench")
    env = {**base, "POSTGRES_DB": settings.postgres_db}
    rng = random.Random(7)
    orders = [random_order(rng) for _ in range(args.orders)]
    items = sum(len(o.items) for o in orders)
    log(f"preloading {len(orders):,} orders ({items:,} items) into {settings.kafka_topic}")
    preload(settings, orders)
    log("consuming with the real consumer process")
    ours = measure_consumer(settings, env, len(orders))
    log(f"consumer: {ours['orders_per_s']:,.0f} orders/s; now the psql \\copy ceiling")
    with tempfile.TemporaryDirectory() as workdir:
        ceiling = measure_ceiling(settings, orders, Path(workdir))
    result = {
        "benchmark": "ingest",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "orders": len(orders),
        "items": items,
        "batch_size": args.batch_size,
        "figures": {
            "ingest": {
                "value": round(ours["orders_per_s"]),
                "unit": "orders/s",
                "ceiling": round(ceiling),
                "ceiling_name": "psql \\copy, same rows",
                "ratio": round(ours["orders_per_s"] / ceiling, 3),
            },
            "ingest_seconds_including_start": {
                "value": round(ours["seconds_including_start"], 2),
                "unit": "s",
            },
        },
    }
    save_result("ingest", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
