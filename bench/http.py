"""HTTP benchmark: GET /order/{uid} through the real service (`python -m service serve`)
against its ceiling, a bare granian RSGI app serving the same bytes (bench/bare_rsgi.py), both
in the same run with wrk.

The ceiling is found, not assumed: the bare app is swept over granian layouts (`sweep`), and
the fastest is the ceiling; ours runs in each of the same layouts. The grid is pruned so it
fits in a few minutes: worker counts 1 … cores + 1 with both task implementations, then from
the fastest of those one runtime option changed at a time (multi-threaded runtime, a second
runtime thread, asyncio's loop, backpressure at the connection count), each kept only if it
is faster (a greedy walk, not the full product, which would be ~40 layouts per side).

Hits: every order is cached; ours in its default layout and the ceiling layout alternate,
BAR_ROUNDS times each, and the best run of each counts: one lucky (or unlucky) run of either
side on a shared machine then moves the ratio less. Misses: the service restarts with a small
cache, so nearly every request goes to PostgreSQL. Writes bench/results/plots/http-layouts.svg.

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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import cli, plots
from bench.common import fresh_database, log, result, write_orders
from bench.nginx import nginx_serving
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
from service.run.granian_workers import Layout, auto_workers, default_layout
from service.store.db import connect
from service.store.writer import OrderWriter

CONNECTIONS = 64
BAR_ROUNDS = 4
MISS_CACHE_SIZE = 1000
WRITE_BATCH = 5000
LUA = Path(__file__).with_name("wrk_report.lua")
BARS = {"hit_ratio_to_ceiling": 0.85, "hit_p99_to_ceiling": 1.5, "miss_p99_ms": 5.0}
CORES = os.cpu_count() or 1
# The service's own layout when nothing is set: `auto` workers for `serve` (no consumer).
DEFAULT_LAYOUT = default_layout(auto_workers(CORES, consumer_beside=False))
# The greedy walk's steps from the fastest worker count, in order; each kept if faster.
# The steps from the bare app to ours (bench/bare_rsgi.py's BENCH_APP; ours is the service).
STEPS = {
    "bare": "bare",
    "path + dict.get": "dict",
    "path + native cache get": "cache",
    "ours": None,
}
NGINX_WORKERS = (1, 2)
ANCHOR_ROUNDS = 2  # of the steps and of nginx: figures beside the bar, not the bar
CHANGES: tuple[Callable[[Layout], Layout], ...] = (
    lambda layout: replace(layout, runtime_mode="mt", runtime_threads=2),
    lambda layout: replace(layout, runtime_threads=2),
    lambda layout: replace(layout, loop="asyncio"),
    lambda layout: replace(layout, backpressure=CONNECTIONS),
)


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


@dataclass(frozen=True, slots=True)
class LayoutPoint:
    """One layout of the sweep: the bare app's run and ours."""

    layout: Layout
    bare: WrkRun
    ours: WrkRun


@dataclass(slots=True)
class HitPhase:
    """wrk runs by connection count, ours and the ceiling's; our hit ratio; the body size;
    the anchors' runs (nginx by worker count, the steps from bare to ours by name)."""

    ours: dict[int, list[WrkRun]] = field(default_factory=dict)
    ceiling: dict[int, list[WrkRun]] = field(default_factory=dict)
    hit_ratio: float = 0.0
    body_bytes: int = 0
    nginx: dict[int, list[WrkRun]] = field(default_factory=dict)
    steps: dict[str, list[WrkRun]] = field(default_factory=dict)


def store_orders(settings: Settings, count: int) -> list[Order]:
    """Write `count` random orders to the database; return them."""
    rng = random.Random(11)
    orders = [random_order(rng) for _ in range(count)]
    writer = OrderWriter(connect(settings))
    try:
        for start in range(0, count, WRITE_BATCH):
            write_orders(writer, orders[start : start + WRITE_BATCH])
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
            "LOG_LEVEL": "WARNING",
            "BENCH_UIDS_FILE": str(Path(workdir) / "uids.txt"),
        }
        for name in [*Layout(1).runtime_env(), "HTTP_WORKERS"]:
            base.pop(name, None)
        settings = fresh_database(base, "orders_bench_http")
        log(f"storing {count:,} orders in {settings.postgres_db}")
        orders = store_orders(settings, count)
        uids_file = Path(base["BENCH_UIDS_FILE"])
        uids_file.write_text("".join(o.order_uid + "\n" for o in orders))
        yield Stored({**base, "POSTGRES_DB": settings.postgres_db}, orders, uids_file)


def typical_uid(orders: list[Order]) -> str:
    """The order whose JSON has the median size."""
    by_size = sorted(orders, key=lambda o: len(encode_order(o)))
    return by_size[len(by_size) // 2].order_uid


@contextmanager
def serving(
    env: dict[str, str], cache_size: int, layout: Layout | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m service serve` on a free port with a cache of `cache_size` orders, in
    `layout` (None: its defaults), ready; yields its base URL and process."""
    port = free_port()
    settings = {"HTTP_PORT": str(port), "CACHE_SIZE": str(cache_size)}
    if layout is not None:
        settings |= {"HTTP_WORKERS": str(layout.workers), **layout.runtime_env()}
    shown = layout.label if layout else "default layout"
    log(f"starting the service with a {cache_size:,}-order cache on port {port} ({shown})")
    with started([*SERVICE, "serve"], {**env, **settings}) as process:
        url = f"http://{HOST}:{port}"
        wait_ready(f"{url}/readyz", process)
        yield url, process


def bare_rsgi(
    env: dict[str, str], port: int, body_file: Path, layout: Layout, app: str = "bare"
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """bench/bare_rsgi.py's `app` (bare, dict or cache) under granian in `layout`."""
    command = [
        *(sys.executable, "-m", "granian", "--interface", "rsgi"),
        *("--workers", str(layout.workers), "--host", HOST, "--port", str(port), "--no-ws"),
        *("--log-level", "warning", "bench.bare_rsgi:app"),
    ]
    app_env = {"BENCH_BODY_FILE": str(body_file), "BENCH_APP": app}
    return started(command, {**env, **layout.runtime_env(), **app_env})


@contextmanager
def bare_serving(
    env: dict[str, str], body_file: Path, layout: Layout, app: str = "bare", uid: str = "x"
) -> Iterator[str]:
    """bench/bare_rsgi.py's `app` in `layout` on a free port, answering `uid`; yields its
    URL."""
    port = free_port()
    with bare_rsgi(env, port, body_file, layout, app) as bare:
        url = f"http://{HOST}:{port}"
        wait_ready(f"{url}/order/{uid}", bare)
        yield url


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


def write_body(data: Stored) -> Path:
    """The median order's response bytes, as ours answers them, for the bare app."""
    body_file = data.uids_file.with_name("order.json")
    if not body_file.exists():
        with serving(data.env, len(data.orders)) as (url, _):
            body_file.write_bytes(http_get(f"{url}/order/{typical_uid(data.orders)}"))
    return body_file


def hit_phase(
    data: Stored,
    seconds: int,
    rounds: int,
    connections: tuple[int, ...] = (CONNECTIONS,),
    ceiling_layout: Layout = DEFAULT_LAYOUT,
) -> HitPhase:
    """Ours in its default layout and the bare app in `ceiling_layout`, alternately, `rounds`
    times at each connection count."""
    phase = HitPhase()
    body_file = write_body(data)
    phase.body_bytes = len(body_file.read_bytes())
    with serving(data.env, len(data.orders)) as (ours_url, _):
        log(f"the bare RSGI ceiling ({phase.body_bytes} bytes) in {ceiling_layout.label}")
        with bare_serving(data.env, body_file, ceiling_layout) as bare_url:
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
        decompose(data, body_file, ours_url, phase, seconds, ANCHOR_ROUNDS)
    anchor(data, body_file, phase, seconds, ANCHOR_ROUNDS)
    return phase


def decompose(
    data: Stored, body_file: Path, ours_url: str, phase: HitPhase, seconds: int, rounds: int
) -> None:
    """Where a hit's time goes, in our default layout: the bare app, our path check with a
    `dict.get`, the same with the shared cache's native `get` (on ours' region, while ours
    runs), and ours, alternately, `rounds` times each."""
    uid = data.orders[0].order_uid
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(bare_serving(data.env, body_file, DEFAULT_LAYOUT, app, uid))
            for name, app in STEPS.items()
            if app is not None
        }
        urls["ours"] = ours_url
        for round_no in range(1, rounds + 1):
            for name, url in urls.items():
                run = run_wrk(url, data.uids_file, seconds)
                phase.steps.setdefault(name, []).append(run)
                log(describe(f"round {round_no} {name} ({DEFAULT_LAYOUT.label})", run))


def anchor(data: Stored, body_file: Path, phase: HitPhase, seconds: int, rounds: int) -> None:
    """nginx serving the same bytes from a file with 1 and with 2 workers, `rounds` each."""
    body = body_file.read_bytes()
    for workers in NGINX_WORKERS:
        with nginx_serving(body, workers) as url:
            for round_no in range(1, rounds + 1):
                run = run_wrk(url, data.uids_file, seconds)
                phase.nginx.setdefault(workers, []).append(run)
                log(describe(f"round {round_no} nginx {workers}w", run))


def measure_layout(data: Stored, body_file: Path, layout: Layout, seconds: int) -> LayoutPoint:
    """The bare app, then ours, in `layout`."""
    with bare_serving(data.env, body_file, layout) as url:
        bare = run_wrk(url, data.uids_file, seconds)
    with serving(data.env, len(data.orders), layout) as (url, _):
        ours = run_wrk(url, data.uids_file, seconds)
    log(describe(f"{layout.label} bare", bare))
    log(describe(f"{layout.label} ours", ours))
    return LayoutPoint(layout, bare, ours)


def sweep(data: Stored, seconds: int, quick: bool) -> list[LayoutPoint]:
    """Worker counts 1 … cores + 1 (both task implementations unless quick), then the greedy
    walk over CHANGES from the fastest bare layout (only the Rust tasks when quick)."""
    body_file = write_body(data)
    task_impls = ("asyncio",) if quick else ("asyncio", "rust")
    points = [
        measure_layout(data, body_file, Layout(workers, task_impl=impl), seconds)
        for impl in task_impls
        for workers in range(1, CORES + 2)
    ]
    best = max(points, key=lambda p: p.bare.requests_per_s)
    changes = (lambda layout: replace(layout, task_impl="rust"),) if quick else CHANGES
    for change in changes:
        candidate = change(best.layout)
        if any(p.layout == candidate for p in points):
            continue
        points.append(measure_layout(data, body_file, candidate, seconds))
        if points[-1].bare.requests_per_s > best.bare.requests_per_s:
            best = points[-1]
    return points


def fastest_bare(points: list[LayoutPoint]) -> Layout:
    return max(points, key=lambda p: p.bare.requests_per_s).layout


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
            "ceiling_name": "bare granian RSGI app, same bytes, fastest layout swept",
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


def anchor_figures(ours: WrkRun, phase: HitPhase) -> dict[str, Any]:
    """Ours against nginx's best run (1 or 2 workers) serving the same bytes from a file."""
    workers, runs = max(phase.nginx.items(), key=lambda item: best(item[1]).requests_per_s)
    nginx = best(runs)
    return {
        "hit_throughput_to_nginx": {
            "value": round(ours.requests_per_s),
            "unit": "requests/s",
            "ceiling": round(nginx.requests_per_s),
            "ceiling_name": f"nginx, the same bytes from a file, {workers} worker(s)",
            "ratio": round(ours.requests_per_s / nginx.requests_per_s, 3),
        },
        "nginx_p99": {"value": round(nginx.p99_ms, 3), "unit": "ms"},
    }


def steps_table(steps: dict[str, list[WrkRun]]) -> str:
    """The steps from the bare app to ours as Markdown, each against the bare app."""
    bare = best(steps["bare"]).requests_per_s
    lines = ["| RSGI app | req/s | p99 | / bare |", "| --- | --- | --- | --- |"]
    for name, runs in steps.items():
        run = best(runs)
        lines.append(
            f"| {name} | {run.requests_per_s:,.0f} | {run.p99_ms:.2f} ms | "
            f"{run.requests_per_s / bare:.0%} |"
        )
    return "\n".join(lines)


def mark_bars(figures: dict[str, Any]) -> None:
    """Add the bars of docs/performance.md to the latency and error figures they apply to."""
    hit_p99 = figures["hit_p99"]
    p99_ratio = hit_p99["value"] / hit_p99["ceiling"]
    hit_p99 |= {
        "ratio": round(p99_ratio, 3),
        "bar": f"<= {BARS['hit_p99_to_ceiling']:g}x ceiling",
        "met": p99_ratio <= BARS["hit_p99_to_ceiling"],
    }
    bar = BARS["miss_p99_ms"]
    figures["miss_p99"] |= {"bar": f"<= {bar:g} ms", "met": figures["miss_p99"]["value"] <= bar}
    figures["miss_errors"] |= {"bar": "0", "met": figures["miss_errors"]["value"] == 0}


def sweep_rows(points: list[LayoutPoint]) -> list[dict[str, Any]]:
    return [
        {"layout": asdict(p.layout), "label": p.layout.label, "bare": asdict(p.bare)}
        | {"ours": asdict(p.ours)}
        for p in points
    ]


def sweep_table(points: list[LayoutPoint], ceiling: Layout, default: Layout) -> str:
    """The sweep as Markdown: layout → req/s and p99 of the bare app and of ours."""
    lines = [
        "| granian layout | bare req/s | bare p99 | ours req/s | ours p99 | ours / bare |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in sorted(points, key=lambda p: -p.bare.requests_per_s):
        marks = " (ceiling)" * (p.layout == ceiling) + " (our default)" * (p.layout == default)
        lines.append(
            f"| {p.layout.label}{marks} | {p.bare.requests_per_s:,.0f} | "
            f"{p.bare.p99_ms:.2f} ms | {p.ours.requests_per_s:,.0f} | {p.ours.p99_ms:.2f} ms | "
            f"{p.ours.requests_per_s / p.bare.requests_per_s:.0%} |"
        )
    return "\n".join(lines)


def plot_sweep(points: list[LayoutPoint], quick: bool) -> None:
    """bench/results/plots/http-layouts.svg: req/s and p99 of each layout, bare and ours."""
    labels = [p.layout.label for p in points]
    figure = plots.Figure(figsize=(11, 4.5), layout="constrained")
    throughput, latency = figure.subplots(1, 2, sharey=True)
    rows = range(len(points))
    for axes, field_name, unit in (
        (throughput, "requests_per_s", "requests/s"),
        (latency, "p99_ms", "p99 latency, ms"),
    ):
        bare = [getattr(p.bare, field_name) for p in points]
        ours = [getattr(p.ours, field_name) for p in points]
        axes.barh([r + 0.2 for r in rows], bare, height=0.4, label="bare RSGI app")
        axes.barh([r - 0.2 for r in rows], ours, height=0.4, label="ours")
        axes.set(xlabel=unit)
        axes.grid(alpha=0.3, axis="x")
        axes.legend(fontsize="small")
    throughput.set(yticks=list(rows), yticklabels=labels)
    mode = " (quick mode)" if quick else ""
    figure.suptitle(f"GET /order/{{uid}} cache hits by granian layout, wrk -c{CONNECTIONS}{mode}")
    plots.save(figure, "http-layouts.svg")


def measure(quick: bool, *, orders: int | None = None) -> dict[str, Any]:
    """The layout sweep, then hits of our default layout against the fastest bare layout,
    then misses, on `orders` stored orders."""
    count = orders or (5_000 if quick else 20_000)
    seconds, rounds = (2, 2) if quick else (5, BAR_ROUNDS)
    bar_seconds = 3 if quick else 8
    with stored(count) as data:
        points = sweep(data, seconds, quick)
        ceiling_layout = fastest_bare(points)
        hits = hit_phase(data, bar_seconds, rounds, ceiling_layout=ceiling_layout)
        misses, miss_ratio = miss_phase(data, bar_seconds)
    ours, ceiling = hits.ours[CONNECTIONS], hits.ceiling[CONNECTIONS]
    miss = misses[CONNECTIONS]
    figures = build_figures(best(ours), best(ceiling), hits.hit_ratio, miss, miss_ratio)
    figures |= anchor_figures(best(ours), hits)
    mark_bars(figures)
    table = sweep_table(points, ceiling_layout, DEFAULT_LAYOUT)
    log(f"layout sweep:\n{table}")
    parameters = {
        "orders": count,
        "cores": CORES,
        "default_layout": DEFAULT_LAYOUT.label,
        "ceiling_layout": ceiling_layout.label,
        "wrk": f"-t1 -c{CONNECTIONS} -d{bar_seconds}s --latency, random stored uids",
        "sweep_wrk_seconds": seconds,
        "ceiling_body_bytes": hits.body_bytes,
        "miss_cache_size": MISS_CACHE_SIZE,
    }
    outcome = result("http", parameters, figures)
    outcome["runs"] = {
        "hit_ours": [asdict(r) for r in ours],
        "hit_ceiling": [asdict(r) for r in ceiling],
        "miss": [asdict(miss)],
    }
    outcome["sweep"] = sweep_rows(points)
    outcome["runs"] |= {
        "nginx": {workers: [asdict(r) for r in runs] for workers, runs in hits.nginx.items()},
        "steps": {name: [asdict(r) for r in runs] for name, runs in hits.steps.items()},
    }
    outcome["notes"] = [
        f"Layout sweep (one {seconds} s wrk run each):\n\n{table}",
        f"Where a hit's time goes ({DEFAULT_LAYOUT.label}, best of {ANCHOR_ROUNDS} alternating "
        f"{bar_seconds} s runs):\n\n{steps_table(hits.steps)}",
    ]
    plot_sweep(points, quick)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 orders, 3 s wrk runs")
    parser.add_argument("--orders", type=int, default=None, help="default 20,000 (quick 5,000)")
    cli.run("http", parser, lambda a: measure(a.quick, orders=a.orders))


if __name__ == "__main__":
    main()
