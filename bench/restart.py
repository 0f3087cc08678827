"""Restart benchmark: the warm-up of a service that restarts with 1,000,000 orders stored, and
the memory its API workers hold once those orders are cached.

    python -m bench.restart [--orders N | --quick]

Warm-up: the warm-up's own time from the service log, in the default layout
(`HTTP_WORKERS=auto`), against its ceiling measured in the same run: the same COPY of the same
bodies read from libpq into nothing (bar: ≤ 1.5x), on a database vacuumed after the load; and
the time from starting `python -m service serve` to `/readyz` answering 200. The two alternate,
ROUNDS times each, and the best of each counts: in a full run the first start after the
previous benchmarks took 4.12 s where the next one took 3.61 s.
Memory: a second start with 4 workers (its warm-up, beside their start, is reported too), then
after a random-read load through them, the proportional set size (PSS) of
every process of the service summed, against the bytes of cached data: one copy of the data
counts 1.0, four private copies would count 4.0. RSS, which counts a shared page once in
every process that touched it, is shown beside.
"""

import argparse
import os
import random
import re
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import cli
from bench.common import fresh_database, log, result, write_orders
from bench.http import run_wrk
from bench.processes import HOST, SERVICE, free_port, stop, wait_ready
from service.config import Settings
from service.produce import random_order
from service.store.copy_out import copy_messages
from service.store.db import connect
from service.store.reader import newest_documents_copy
from service.store.writer import OrderWriter

WORKERS = 4
WRITE_BATCH = 10_000
WARMUP_BAR = 1.3
ROUNDS = 2
COPIES_BAR = 1.5
LOAD_SECONDS = 10


def store_random_orders(settings: Settings, count: int) -> None:
    """Write `count` random orders in batches, without holding them all in memory."""
    rng = random.Random(11)
    writer = OrderWriter(connect(settings))
    try:
        for start in range(0, count, WRITE_BATCH):
            write_orders(
                writer, [random_order(rng) for _ in range(min(WRITE_BATCH, count - start))]
            )
            if (start // WRITE_BATCH) % 10 == 9:
                log(f"  stored {start + WRITE_BATCH:,} of {count:,}")
    finally:
        writer.close()


def settle(settings: Settings) -> None:
    """VACUUM ANALYZE the freshly written tables, as they would be by the time a service
    restarts: otherwise the warm-up's scan is the first read of 1.3 GB of new rows, sets
    their hint bits (writing every page back) and races autovacuum, which measured 7.6 s to
    ready in one run and 13.1 s in the next."""
    with connect(settings) as conn:
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE)")


def bare_read_s(settings: Settings, count: int) -> float:
    """One timing of the warm-up's COPY read message by message and dropped, the way the
    warm-up reads it (`copy_messages`, straight from libpq): the least work that gets the
    same bytes out of PostgreSQL into this process."""
    with connect(settings) as conn:
        started = time.perf_counter()
        with newest_documents_copy(conn, count) as copy:
            for _message in copy_messages(copy):
                pass
        seconds = time.perf_counter() - started
    log(f"bare read of the warm-up's COPY: {seconds:.2f} s")
    return seconds


def stored_uids(settings: Settings, path: Path) -> None:
    with connect(settings) as conn, path.open("w") as out:
        for (uid,) in conn.execute("SELECT order_uid FROM orders"):
            out.write(f"{uid}\n")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """Rss, Pss and private (USS) of one process, in KiB, from smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    value = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE)}
    return {
        "rss": value["Rss"],
        "pss": value["Pss"],
        "uss": value["Private_Clean"] + value["Private_Dirty"],
    }


def cache_bytes(metrics_text: str) -> int:
    match = re.search(r"^cache_bytes ([0-9]+)$", metrics_text, re.MULTILINE)
    if match is None:
        raise RuntimeError("cache_bytes missing from /metrics")
    return int(match.group(1))


@contextmanager
def serving(env: dict[str, str], log_file: Path) -> Iterator[tuple[str, int, float]]:
    """`python -m service serve`, logging to `log_file`, from its start until /readyz answers
    200: its URL, its pid and the seconds that took."""
    url = f"http://{HOST}:{env['HTTP_PORT']}"
    with log_file.open("wb") as service_log:
        started_at = time.perf_counter()
        process = subprocess.Popen(
            [*SERVICE, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=service_log
        )
        try:
            wait_ready(f"{url}/readyz", process, timeout_s=600)
            yield url, process.pid, time.perf_counter() - started_at
        finally:
            stop(process)


def warmup_line(log_file: Path) -> tuple[int, float]:
    """Orders and seconds from the warm-up's own log line."""
    warm = re.search(rb"warm-up loaded (\d+) orders in ([0-9.]+) s", log_file.read_bytes())
    if warm is None:
        raise RuntimeError(f"no warm-up line in {log_file}")
    return int(warm.group(1)), float(warm.group(2))


def default_start(env: dict[str, str], log_file: Path) -> dict[str, Any]:
    """A start in the default layout (`HTTP_WORKERS=auto`): the warm-up and time to ready."""
    with serving(env, log_file) as (_, _, ready_s):
        log(f"ready after {ready_s:.2f} s in the default layout")
    orders, seconds = warmup_line(log_file)
    return {"ready_s": ready_s, "warmup_orders": orders, "warmup_s": seconds}


def loaded_start(env: dict[str, str], uids_file: Path, log_file: Path) -> dict[str, Any]:
    """A start with WORKERS workers: the warm-up beside their start, then a random-read load
    through them and every process's memory."""
    with serving({**env, "HTTP_WORKERS": str(WORKERS)}, log_file) as (url, pid, ready_s):
        log(f"ready after {ready_s:.2f} s; reading through {WORKERS} workers")
        load = run_wrk(url, uids_file, LOAD_SECONDS)
        pids = descendants(pid)
        memory = {pid: memory_kib(pid) for pid in pids}
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            data = cache_bytes(response.read().decode())
    return {
        "warmup_s": warmup_line(log_file)[1],
        "load_requests": load.requests,
        "load_errors": load.non_2xx + load.socket_errors,
        "processes": len(pids),
        "memory_kib": memory,
        "data_bytes": data,
    }


def figures(start: dict[str, Any], loaded: dict[str, Any], bare_s: float) -> dict[str, Any]:
    memory = loaded["memory_kib"].values()
    pss = sum(m["pss"] for m in memory) * 1024
    uss = sum(m["uss"] for m in memory) * 1024
    rss = sum(m["rss"] for m in memory) * 1024
    data = loaded["data_bytes"]
    copies = (pss - uss) / data
    mib = 2**20
    ratio = start["warmup_s"] / bare_s
    return {
        "warmup_vs_bare_read": {
            "value": round(ratio, 2),
            "unit": "x",
            "bar": f"<= {WARMUP_BAR:g}x",
            "met": ratio <= WARMUP_BAR,
        },
        "warmup_load": {"value": round(start["warmup_s"], 2), "unit": "s"},
        "bare_read": {"value": round(bare_s, 2), "unit": "s"},
        "warmup_ready": {"value": round(start["ready_s"], 2), "unit": "s"},
        "warmup_orders": {"value": start["warmup_orders"], "unit": "orders"},
        f"warmup_load_{WORKERS}_workers": {"value": round(loaded["warmup_s"], 2), "unit": "s"},
        "cache_data": {"value": round(data / mib), "unit": "MiB"},
        "memory_pss_sum": {"value": round(pss / mib), "unit": "MiB"},
        "memory_rss_sum": {"value": round(rss / mib), "unit": "MiB"},
        "memory_private_sum": {"value": round(uss / mib), "unit": "MiB"},
        "memory_data_copies": {
            "value": round(copies, 2),
            "unit": "copies",
            "bar": f"one copy (< {COPIES_BAR:g}), not {WORKERS}",
            "met": copies < COPIES_BAR,
        },
        "load_errors": {"value": loaded["load_errors"], "unit": "responses"},
    }


def measure(quick: bool, orders: int | None = None) -> dict[str, Any]:
    count = orders or (50_000 if quick else 1_000_000)
    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as workdir:
        base = {
            "CACHE_NAME": f"bench-restart-{run}",
            "CACHE_SIZE": str(count),
            "METRICS_DIR": str(Path(workdir) / "metrics"),
            "KAFKA_TOPIC": "bench-restart",
            "HTTP_HOST": HOST,
            "HTTP_PORT": str(free_port()),
            "LOG_LEVEL": "INFO",
        }
        settings = fresh_database({**os.environ, **base}, "orders_bench_restart")
        env = {**os.environ, **base, "POSTGRES_DB": settings.postgres_db}
        log(f"storing {count:,} orders in {settings.postgres_db}")
        store_random_orders(settings, count)
        settle(settings)
        uids_file = Path(workdir) / "uids.txt"
        stored_uids(settings, uids_file)
        log(f"restarting the service against them, {ROUNDS} rounds beside the bare read")
        bare_runs, starts = [], []
        for round_no in range(1, ROUNDS + 1):
            bare_runs.append(bare_read_s(settings, count))
            starts.append(default_start(env, Path(workdir) / f"service-{round_no}.log"))
        bare_s = min(bare_runs)
        start = min(starts, key=lambda s: s["warmup_s"])
        loaded = loaded_start(env, uids_file, Path(workdir) / "service-loaded.log")
    log(
        f"ready in {start['ready_s']:.2f} s (warm-up {start['warmup_s']:.2f} s for "
        f"{start['warmup_orders']:,} orders, {start['warmup_s'] / bare_s:.2f}x the bare "
        f"read's {bare_s:.2f} s; {loaded['warmup_s']:.2f} s beside {WORKERS} workers' start)"
    )
    return result(
        "restart",
        {
            "orders": count,
            "workers": WORKERS,
            "load": f"wrk -t1 -c64 -d{LOAD_SECONDS}s random",
            "warmup_runs_s": [round(s["warmup_s"], 2) for s in starts],
            "bare_read_runs_s": [round(s, 2) for s in bare_runs],
        },
        figures(start, loaded, bare_s),
    ) | {"processes": loaded["memory_kib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50,000 orders")
    parser.add_argument("--orders", type=int, default=None, help="default 1,000,000")
    cli.run("restart", parser, lambda a: measure(a.quick, a.orders))


if __name__ == "__main__":
    main()
