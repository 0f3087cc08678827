"""HTTP benchmark: GET /order/{uid} through the real service (`python -m service serve`,
granian + Litestar, 2 workers) against its ceiling, a bare granian RSGI app serving the same
bytes (bench/bare_rsgi.py), measured side by side with wrk in the same run.

Hits: every order is cached; ours and the ceiling alternate and the best run of each counts.
Misses: the service restarts with a small cache, so nearly every request goes to PostgreSQL.

    python -m bench.http [--quick] [--orders 20000]
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import cli
from bench.common import fresh_database, log, result
from bench.processes import (
    HOST,
    SERVICE,
    free_port,
    http_get,
    metrics,
    started,
    wait_ready,
)
from service.config import Settings
from service.model import Order, encode_order
from service.produce import random_order
from service.store.db import connect
from service.store.writer import OrderWriter

WORKERS = 2
CONNECTIONS = 64
MISS_CACHE_SIZE = 1000
WRITE_BATCH = 5000
LUA = Path(__file__).with_name("wrk_report.lua")
BARS = {"hit_ratio_to_ceiling": 0.5, "hit_p99_ms": 5.0, "miss_p99_ms": 25.0}


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run's figures; latencies in milliseconds."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True, slots=True)
class Stored:
    """A fresh database holding `orders`, their uids in a file for wrk, the service's env."""

    env: dict[str, str]
    orders: list[Order]
    uids_file: Path


@dataclass(slots=True)
class HitPhase:
    """wrk runs by connection count, ours and the ceiling's; our hit ratio; the body size."""

    ours: dict[int, list[WrkRun]] = field(default_factory=dict)
    ceiling: dict[int, list[WrkRun]] = field(default_factory=dict)
    hit_ratio: float = 0.0
    body_bytes: int = 0


def store_orders(settings: Settings, count: int) -> list[Order]:
    """Write `count` random orders to the database; return them."""
    rng = random.Random(11)
    orders = [random_order(rng) for _ in range(count)]
    writer = OrderWriter(connect(settings))
    try:
        for start in range(0, count, WRITE_BATCH):
            writer.write(orders[start : start + WRITE_BATCH])
    finally:
        writer.close()
    return orders


@contextmanager
def stored(count: int) -> Iterator[Stored]:
    """`count` random orders in a fresh database, for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="bench-http-") as workdir:
        run = uuid.uuid4().hex[:8]
        base = {
            **os.environ,
            "CACHE_NAME": f"bench-http-{run}",
            "METRICS_DIR": str(Path(workdir) / "metrics"),
            "KAFKA_TOPIC": "bench-http",
            "HTTP_HOST": HOST,
            "HTTP_WORKERS": str(WORKERS),
            "LOG_LEVEL": "WARNING",
        }
        settings = fresh_database(base, "orders_bench_http")
        log(f"storing {count:,} orders in {settings.postgres_db}")
        orders = store_orders(settings, count)
        uids_file = Path(workdir) / "uids.txt"
        uids_file.write_text("".join(o.order_uid + "\n" for o in orders))
        yield Stored({**base, "POSTGRES_DB": settings.postgres_db}, orders, uids_file)


def typical_uid(orders: list[Order]) -> str:
    """The order whose JSON has the median size."""
    by_size = sorted(orders, key=lambda o: len(encode_order(o)))
    return by_size[len(by_size) // 2].order_uid


@contextmanager
def serving(env: dict[str, str], cache_size: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m service serve` on a free port with a cache of `cache_size` orders, ready;
    yields its base URL and process."""
    port = free_port()
    settings = {"HTTP_PORT": str(port), "CACHE_SIZE": str(cache_size)}
    log(f"starting the service with a {cache_size:,}-order cache on port {port}")
    with started([*SERVICE, "serve"], {**env, **settings}) as process:
        url = f"http://{HOST}:{port}"
        wait_ready(f"{url}/readyz", process)
        yield url, process


def bare_rsgi(
    env: dict[str, str], port: int, body_file: Path
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The ceiling: bench/bare_rsgi.py under granian with the service's worker settings."""
    command = [
        *(sys.executable, "-m", "granian", "--interface", "rsgi", "--loop", "uvloop"),
        *("--workers", str(WORKERS), "--host", HOST, "--port", str(port), "--no-ws"),
        *("--log-level", "warning", "bench.bare_rsgi:app"),
    ]
    return started(command, {**env, "BENCH_BODY_FILE": str(body_file)})


def cache_counts(base_url: str) -> tuple[float, float]:
    """(cache_hits_total, cache_misses_total) summed over the workers, from /metrics."""
    values = metrics(base_url)
    return values.get("cache_hits_total", 0.0), values.get("cache_misses_total", 0.0)


def run_wrk(base_url: str, uids_file: Path, seconds: int, connections: int = CONNECTIONS) -> WrkRun:
    """wrk GETs random uids from `uids_file` for `seconds` over `connections` connections."""
    command = [
        *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"),
        *("-s", str(LUA), base_url, "--", str(uids_file)),
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    match = re.search(r"^WRK_JSON (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary in wrk output:\n{output}")
    raw = json.loads(match.group(1))
    return WrkRun(
        requests_per_s=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=raw["requests"],
        non_2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
    )


def describe(name: str, run: WrkRun) -> str:
    return (
        f"{name}: {run.requests_per_s:,.0f} req/s, p50 {run.p50_ms:.2f} ms, "
        f"p99 {run.p99_ms:.2f} ms, errors {run.non_2xx + run.socket_errors}"
    )


def hit_phase(
    data: Stored, seconds: int, rounds: int, connections: tuple[int, ...] = (CONNECTIONS,)
) -> HitPhase:
    """Ours and the ceiling alternately, `rounds` times at each connection count."""
    phase = HitPhase()
    with serving(data.env, len(data.orders)) as (ours_url, _):
        body_file = data.uids_file.with_name("order.json")
        phase.body_bytes = body_file.write_bytes(
            http_get(f"{ours_url}/order/{typical_uid(data.orders)}")
        )
        bare_port = free_port()
        log(f"starting the bare RSGI ceiling ({phase.body_bytes} bytes) on port {bare_port}")
        with bare_rsgi(data.env, bare_port, body_file) as bare:
            bare_url = f"http://{HOST}:{bare_port}"
            wait_ready(f"{bare_url}/order/x", bare)
            hits, misses = cache_counts(ours_url)
            for round_no in range(1, rounds + 1):
                for conns in connections:
                    for runs, url, name in (
                        (phase.ours, ours_url, "ours"),
                        (phase.ceiling, bare_url, "ceiling"),
                    ):
                        runs.setdefault(conns, []).append(
                            run_wrk(url, data.uids_file, seconds, conns)
                        )
                        log(describe(f"round {round_no} {name} -c{conns}", runs[conns][-1]))
            hits_after, misses_after = cache_counts(ours_url)
    phase.hit_ratio = hit_ratio(hits_after - hits, misses_after - misses)
    return phase


def miss_phase(
    data: Stored, seconds: int, connections: tuple[int, ...] = (CONNECTIONS,)
) -> tuple[dict[int, WrkRun], float]:
    """The service with a small cache, random uids over every stored order."""
    runs: dict[int, WrkRun] = {}
    with serving(data.env, MISS_CACHE_SIZE) as (url, _):
        hits, misses = cache_counts(url)
        for conns in connections:
            runs[conns] = run_wrk(url, data.uids_file, seconds, conns)
            log(describe(f"miss -c{conns}", runs[conns]))
        hits_after, misses_after = cache_counts(url)
    ratio = hit_ratio(hits_after - hits, misses_after - misses)
    log(f"miss phase hit ratio {ratio:.1%}")
    return runs, ratio


def hit_ratio(hits: float, misses: float) -> float:
    return hits / (hits + misses) if hits + misses else 0.0


def best(runs: list[WrkRun]) -> WrkRun:
    return max(runs, key=lambda r: r.requests_per_s)


def latency_figures(prefix: str, ours: WrkRun, ceiling: WrkRun | None) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in ("p50_ms", "p99_ms", "p999_ms"):
        figure: dict[str, Any] = {"value": round(getattr(ours, name), 3), "unit": "ms"}
        if ceiling is not None:
            figure["ceiling"] = round(getattr(ceiling, name), 3)
        figures[f"{prefix}_{name.removesuffix('_ms')}"] = figure
    errors: dict[str, Any] = {"value": ours.non_2xx + ours.socket_errors, "unit": "responses"}
    if ceiling is not None:
        errors["ceiling"] = ceiling.non_2xx + ceiling.socket_errors
    figures[f"{prefix}_errors"] = errors
    return figures


def build_figures(
    hit: WrkRun, ceiling: WrkRun, hit_ratio_hits: float, miss: WrkRun, miss_ratio: float
) -> dict[str, Any]:
    ratio = hit.requests_per_s / ceiling.requests_per_s
    return {
        "hit_throughput": {
            "value": round(hit.requests_per_s),
            "unit": "requests/s",
            "ceiling": round(ceiling.requests_per_s),
            "ceiling_name": "bare granian RSGI app, same bytes, same workers",
            "ratio": round(ratio, 3),
            "bar": f">= {BARS['hit_ratio_to_ceiling']:.0%} of ceiling",
            "met": ratio >= BARS["hit_ratio_to_ceiling"],
        },
        **latency_figures("hit", hit, ceiling),
        "hit_cache_hit_ratio": {"value": round(hit_ratio_hits, 4), "unit": "fraction"},
        "miss_throughput": {"value": round(miss.requests_per_s), "unit": "requests/s"},
        **latency_figures("miss", miss, None),
        "miss_cache_hit_ratio": {"value": round(miss_ratio, 4), "unit": "fraction"},
    }


def mark_bars(figures: dict[str, Any]) -> None:
    """Add the GUIDE bars to the latency and error figures they apply to."""
    for key, bar in (("hit_p99", BARS["hit_p99_ms"]), ("miss_p99", BARS["miss_p99_ms"])):
        figures[key] |= {"bar": f"<= {bar:g} ms", "met": figures[key]["value"] <= bar}
    figures["miss_errors"] |= {"bar": "0", "met": figures["miss_errors"]["value"] == 0}


def measure(quick: bool, *, orders: int | None = None) -> dict[str, Any]:
    """Hits against the bare RSGI ceiling, then misses, on `orders` stored orders."""
    count = orders or (5_000 if quick else 20_000)
    seconds, rounds = (3, 2) if quick else (8, 2)
    with stored(count) as data:
        hits = hit_phase(data, seconds, rounds)
        misses, miss_ratio = miss_phase(data, seconds)
    ours, ceiling = hits.ours[CONNECTIONS], hits.ceiling[CONNECTIONS]
    miss = misses[CONNECTIONS]
    figures = build_figures(best(ours), best(ceiling), hits.hit_ratio, miss, miss_ratio)
    mark_bars(figures)
    parameters = {
        "orders": count,
        "workers": WORKERS,
        "wrk": f"-t1 -c{CONNECTIONS} -d{seconds}s --latency, random stored uids",
        "ceiling_body_bytes": hits.body_bytes,
        "miss_cache_size": MISS_CACHE_SIZE,
    }
    outcome = result("http", parameters, figures)
    outcome["runs"] = {
        "hit_ours": [asdict(r) for r in ours],
        "hit_ceiling": [asdict(r) for r in ceiling],
        "miss": [asdict(miss)],
    }
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 orders, 3 s wrk runs")
    parser.add_argument("--orders", type=int, default=None, help="default 20,000 (quick 5,000)")
    cli.run("http", parser, lambda a: measure(a.quick, orders=a.orders))


if __name__ == "__main__":
    main()
