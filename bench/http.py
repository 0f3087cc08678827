"""HTTP benchmark: GET /order/{uid} through the real service (`python -m service serve`,
granian + Litestar, 2 workers) against its ceiling, a bare granian RSGI app serving the same
bytes (bench/bare_rsgi.py), measured side by side with wrk in the same run.

Hits: every order is cached; ours and the ceiling alternate and the best run of each counts.
Misses: the service restarts with a small cache, so nearly every request goes to PostgreSQL.

    python -m bench.http [--quick]
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import granian

from bench.common import REPO, fresh_database, log, machine, save_result
from service.config import Settings
from service.model import Order, encode_order
from service.produce import random_order
from service.store.db import connect
from service.store.writer import OrderWriter

HOST = "127.0.0.1"
WORKERS = 2
CONNECTIONS = 64
MISS_CACHE_SIZE = 1000
WRITE_BATCH = 5000
STOP_TIMEOUT_S = 45.0
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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


def typical_uid(orders: list[Order]) -> str:
    """The order whose JSON has the median size."""
    by_size = sorted(orders, key=lambda o: len(encode_order(o)))
    return by_size[len(by_size) // 2].order_uid


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait; if it hangs, SIGKILL its whole process group (started by us)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log(f"pid {process.pid} did not stop in {STOP_TIMEOUT_S:.0f} s; killing its group")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in its own session for the duration of the block; always stop it."""
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process
    finally:
        stop(process)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            http_get(url)
        except OSError:
            time.sleep(0.2)
        else:
            return
    raise RuntimeError(f"{url} not ready within {timeout_s:.0f} s")


def serve(
    env: dict[str, str], port: int, cache_size: int
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`python -m service serve` on `port` with a cache of `cache_size` orders."""
    settings = {"HTTP_PORT": str(port), "CACHE_SIZE": str(cache_size)}
    return started([sys.executable, "-m", "service", "serve"], {**env, **settings})


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
    text = http_get(f"{base_url}/metrics").decode()
    values = dict(re.findall(r"^(cache_(?:hits|misses)_total) (\S+)$", text, re.MULTILINE))
    return float(values.get("cache_hits_total", 0)), float(values.get("cache_misses_total", 0))


def run_wrk(base_url: str, uids_file: Path, seconds: int) -> WrkRun:
    command = [
        *("wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"),
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
    env: dict[str, str], uids_file: Path, count: int, typical: str, seconds: int, rounds: int
) -> tuple[list[WrkRun], list[WrkRun], float, int]:
    """Ours and the ceiling alternately; returns their runs, our hit ratio, the body size."""
    ours_runs: list[WrkRun] = []
    ceiling_runs: list[WrkRun] = []
    port, bare_port = free_port(), free_port()
    ours_url, bare_url = f"http://{HOST}:{port}", f"http://{HOST}:{bare_port}"
    log(f"starting the service with every order cached ({count:,}) on port {port}")
    with serve(env, port, count) as service:
        wait_ready(f"{ours_url}/readyz", service)
        body_file = uids_file.with_name("order.json")
        body_size = body_file.write_bytes(http_get(f"{ours_url}/order/{typical}"))
        log(f"starting the bare RSGI ceiling ({body_size} bytes) on port {bare_port}")
        with bare_rsgi(env, bare_port, body_file) as bare:
            wait_ready(f"{bare_url}/order/x", bare)
            hits, misses = cache_counts(ours_url)
            for round_no in range(1, rounds + 1):
                ours_runs.append(run_wrk(ours_url, uids_file, seconds))
                log(describe(f"round {round_no} ours", ours_runs[-1]))
                ceiling_runs.append(run_wrk(bare_url, uids_file, seconds))
                log(describe(f"round {round_no} ceiling", ceiling_runs[-1]))
            hits_after, misses_after = cache_counts(ours_url)
    ratio = hit_ratio(hits_after - hits, misses_after - misses)
    return ours_runs, ceiling_runs, ratio, body_size


def miss_phase(env: dict[str, str], uids_file: Path, seconds: int) -> tuple[WrkRun, float]:
    """The service with a small cache, random uids over every stored order."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    log(f"restarting the service with a {MISS_CACHE_SIZE:,}-order cache on port {port}")
    with serve(env, port, MISS_CACHE_SIZE) as service:
        wait_ready(f"{url}/readyz", service)
        hits, misses = cache_counts(url)
        run = run_wrk(url, uids_file, seconds)
        hits_after, misses_after = cache_counts(url)
    ratio = hit_ratio(hits_after - hits, misses_after - misses)
    log(describe("miss", run) + f", hit ratio {ratio:.1%}")
    return run, ratio


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


def markdown(figures: dict[str, Any]) -> str:
    lines = ["| Figure | Ours | Ceiling | Ours/ceiling | Bar | Met |", "|---|---|---|---|---|---|"]
    for name, f in figures.items():
        value = f"{f['value']:.1%}" if f["unit"] == "fraction" else f"{f['value']:,} {f['unit']}"
        ceiling = f"{f['ceiling']:,} {f['unit']}" if "ceiling" in f else ""
        ratio = f"{f['ratio']:.1%}" if "ratio" in f else ""
        met = "" if "met" not in f else "yes" if f["met"] else "**no**"
        lines.append(f"| {name} | {value} | {ceiling} | {ratio} | {f.get('bar', '')} | {met} |")
    return "\n".join(lines)


def _exit_on_sigterm(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 orders, 3 s wrk runs")
    parser.add_argument("--orders", type=int, default=None, help="default 20,000 (quick 5,000)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    count = args.orders or (5_000 if args.quick else 20_000)
    seconds, rounds = (3, 2) if args.quick else (8, 2)
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
        env = {**base, "POSTGRES_DB": settings.postgres_db}
        log(f"storing {count:,} orders in {settings.postgres_db}")
        orders = store_orders(settings, count)
        uids_file = Path(workdir) / "uids.txt"
        uids_file.write_text("".join(o.order_uid + "\n" for o in orders))
        ours, ceiling, hits_ratio, body_bytes = hit_phase(
            env, uids_file, count, typical_uid(orders), seconds, rounds
        )
        miss, miss_ratio = miss_phase(env, uids_file, seconds)
    figures = build_figures(best(ours), best(ceiling), hits_ratio, miss, miss_ratio)
    mark_bars(figures)
    result = {
        "benchmark": "http",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(granian=granian.__version__),
        "orders": count,
        "workers": WORKERS,
        "wrk": f"-t1 -c{CONNECTIONS} -d{seconds}s --latency, random stored uids",
        "ceiling_body_bytes": body_bytes,
        "miss_cache_size": MISS_CACHE_SIZE,
        "figures": figures,
        "runs": {
            "hit_ours": [asdict(r) for r in ours],
            "hit_ceiling": [asdict(r) for r in ceiling],
            "miss": [asdict(miss)],
        },
    }
    save_result("http", result)
    print(markdown(figures))


if __name__ == "__main__":
    main()
