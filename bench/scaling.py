"""Scaling benchmark: ingest orders/s with 1, 2 and 3 consumer processes in one group, reading
the same orders from a topic of KAFKA_PARTITIONS (6 by default), and where the CPU went.

Each run gets a new topic, consumer group and an emptied database. The orders are produced only
once every consumer holds partitions (the group is stable), and the rate is counted from then
until the last order is stored. The orders were generated beforehand, and the producer outruns
the consumers (its rate is reported beside theirs). Consuming a topic filled beforehand would
not measure n consumers: the broker hands a new group's partitions to its first member at once
(`group.initial.rebalance.delay.ms=0`), which drains much of the topic alone while the others
start, and the rest is timed only after that.

CPU time is read CPU time is
read from /proc for the consumers, the PostgreSQL processes serving them (their backends plus
WAL writer, checkpointer and background writer) and the Kafka broker, and set against the
machine's busy time: the consumers' share says whether Python or the database bounds ingest.
Its ceiling is perfect scaling, n times one consumer's rate.

    python -m bench.scaling [--quick]
"""

import argparse
import os
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient

from bench import cli
from bench.common import REPO, log, result
from bench.cpu import cpu_seconds, machine_busy_seconds, postgres_cpu_seconds
from bench.preload import (
    cache_region,
    check_alive,
    consumer,
    count_orders,
    generated,
    preload,
    wait_stored,
)
from service.config import Settings
from service.ingest.kafka import ensure_topics
from service.model import Order
from service.store.rows import TABLES

CONSUMERS = (1, 2, 3)
_KAFKA_PIDFILE = Path(os.environ.get("ORDERS_STATE_DIR", REPO / ".local")) / "kafka/kafka.pid"


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
        postgres=postgres_cpu_seconds(conn, database),
        kafka=cpu_seconds(broker) if broker else 0.0,
        busy=machine_busy_seconds(),
    )


def group_is_stable(admin: AdminClient, group: str, members: int) -> bool:
    """Whether `members` consumers each hold at least one partition."""
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    held = [m.assignment.topic_partitions for m in description.members]
    return len(held) == members and all(held)


class Producing(threading.Thread):
    """`orders` sent to the topic of `settings` beside the measurement, timed."""

    def __init__(self, settings: Settings, orders: list[Order]) -> None:
        super().__init__(name="producing")
        self._settings, self._orders = settings, orders
        self.seconds = 0.0

    def run(self) -> None:
        started = time.perf_counter()
        preload(self._settings, self._orders)
        self.seconds = time.perf_counter() - started


def run_consumers(
    settings: Settings, env: dict[str, str], count: int, orders: list[Order]
) -> dict[str, Any]:
    """`count` consumer processes in a new group on a new topic, filling one cache region as the
    consumer of `python -m service run` does, while `orders` are produced to the topic."""
    group = f"{settings.kafka_group}-{count}"
    settings = replace(settings, kafka_topic=f"{settings.kafka_topic}-{count}", kafka_group=group)
    ensure_topics(settings)
    run_env = {**env, "KAFKA_GROUP": group, "KAFKA_TOPIC": settings.kafka_topic}
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
        producing = Producing(settings, orders)
        producing.start()
        wait_stored(conn, processes, len(orders))
        last = sample(conn, settings.postgres_db, processes)
        producing.join()
    seconds = last.at - first.at
    consumer_cores = [
        (b - a) / seconds for a, b in zip(first.consumers, last.consumers, strict=True)
    ]
    return {
        "orders_per_s": (last.stored - first.stored) / seconds,
        "counted_orders": last.stored - first.stored,
        "seconds": seconds,
        "produced_per_s": len(orders) / producing.seconds,
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
            "produced_per_s": round(run["produced_per_s"]),
            "consumer_cores": [round(c, 2) for c in run["consumer_cores"]],
            "postgres_cores": round(run["postgres_cores"], 2),
            "kafka_cores": round(run["kafka_cores"], 2),
            "machine_busy_cores": round(run["machine_busy_cores"], 2),
        }
    if 2 in runs:  # the bar: a second consumer must not cost throughput
        out["ingest_2_consumers"] |= {
            "bar": "no less than one consumer",
            "met": runs[2]["orders_per_s"] >= one,
        }
    return out


def measure(quick: bool) -> dict[str, Any]:
    """The same orders consumed by 1, 2 and 3 consumers, each in its own group and topic."""
    data = generated(60_000 if quick else 200_000, database="orders_bench_scaling")
    runs: dict[int, dict[str, Any]] = {}
    for count in CONSUMERS:
        log(f"consuming {len(data.orders):,} orders with {count} consumer process(es)")
        runs[count] = run_consumers(data.settings, data.env, count, data.orders)
        cores = " + ".join(f"{c:.2f}" for c in runs[count]["consumer_cores"])
        run = runs[count]
        log(
            f"{count}: {run['orders_per_s']:,.0f} orders/s (produced at "
            f"{run['produced_per_s']:,.0f}/s); cores: consumers {cores}, "
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
