"""py-spy flamegraphs (SVG) of the consumer under ingest load and of the API workers under hit
and under miss load, on the benchmarks' own set-ups (bench/preload.py, bench/http.py).

py-spy attaches to the running process with --subprocesses (the API's granian workers are
children of `python -m service serve`) once the load has started, and stops when it ends:
    consumer-ingest.svg  `python -m service consume` draining a preloaded topic into the
                         database and a cache region
    api-hit.svg          the workers under wrk, every order cached
    api-miss.svg         the workers under wrk, a 1,000-order cache (nearly every GET a miss)
    warmup.svg           the runner of `python -m service serve` from its start to /readyz

    python -m bench.profile [--only consumer|hit|miss|warmup] [--out DIR] [--quick]
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench import http, preload, restart
from bench.common import REPO, fresh_database, log
from bench.processes import HOST, SERVICE, exit_on_sigterm, free_port, stop, wait_ready

RATE_HZ = 250
ATTACH_S = 1.0
STOP_S = 60.0
PY_SPY = Path(sys.executable).with_name("py-spy")


@contextmanager
def recording(pid: int, out: Path) -> Iterator[None]:
    """py-spy record of `pid` and its children for the duration of the block."""
    command = [
        *(str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--rate", str(RATE_HZ)),
        *("--format", "flamegraph", "--output", str(out)),
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    time.sleep(ATTACH_S)
    if spy.poll() is not None:
        raise RuntimeError(f"py-spy could not attach to pid {pid} (exit {spy.returncode})")
    try:
        yield
    finally:
        # SIGINT is py-spy's "stop and write the flamegraph".
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    log(f"wrote {out}")


def consumer(out: Path, quick: bool) -> None:
    data = preload.preloaded(50_000 if quick else 200_000)
    with (
        psycopg.connect(data.settings.postgres_conninfo, autocommit=True) as conn,
        preload.cache_region(data.settings),
        preload.consumer(data.env) as process,
    ):
        preload.wait_stored(conn, [process], 1)
        with recording(process.pid, out / "consumer-ingest.svg"):
            preload.wait_stored(conn, [process], len(data.orders))


def api(out: Path, quick: bool, kind: str) -> None:
    seconds = 5 if quick else 15
    with http.stored(5_000 if quick else 20_000) as data:
        cache_size = len(data.orders) if kind == "hit" else http.MISS_CACHE_SIZE
        with (
            http.serving(data.env, cache_size) as (url, process),
            recording(process.pid, out / f"api-{kind}.svg"),
        ):
            log(http.describe(kind, http.run_wrk(url, data.uids_file, seconds)))


def warmup(out: Path, quick: bool) -> None:
    """py-spy starts the service itself, so the warm-up is recorded from its first line;
    stopping the service once it is ready ends the recording. 200,000 orders (50,000 quick)."""
    count = 50_000 if quick else 200_000
    base = {
        **os.environ,
        "CACHE_NAME": f"bench-profile-warmup-{os.getpid()}",
        "CACHE_SIZE": str(count),
        "KAFKA_TOPIC": "bench-profile-warmup",
        "HTTP_HOST": HOST,
        "HTTP_PORT": str(free_port()),
    }
    settings = fresh_database(base, "orders_bench_profile_warmup")
    restart.store_random_orders(settings, count)
    restart.settle(settings)
    # The runner alone: granian's workers starting beside it are not the warm-up's work.
    command = [
        *(str(PY_SPY), "record", "--rate", str(RATE_HZ), "--format", "flamegraph"),
        *("--output", str(out / "warmup.svg"), "--", *SERVICE, "serve"),
    ]
    env = {**base, "POSTGRES_DB": settings.postgres_db}
    spy = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_ready(f"http://{HOST}:{base['HTTP_PORT']}/readyz", spy, timeout_s=600)
        # py-spy's child is the service: the recording ends, and is written, when it exits.
        for child in Path(f"/proc/{spy.pid}/task/{spy.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)
        spy.wait(STOP_S)
    finally:
        stop(spy)
    log(f"wrote {out / 'warmup.svg'}")


PROFILES: dict[str, Callable[[Path, bool], None]] = {
    "consumer": consumer,
    "hit": lambda out, quick: api(out, quick, "hit"),
    "miss": lambda out, quick: api(out, quick, "miss"),
    "warmup": warmup,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(PROFILES), action="append")
    parser.add_argument("--out", type=Path, default=REPO / "profiles", help="default profiles/")
    parser.add_argument("--quick", action="store_true", help="shorter loads, for development")
    args = parser.parse_args()
    exit_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or PROFILES:
        log(f"profiling {name} at {RATE_HZ} Hz")
        PROFILES[name](args.out.resolve(), args.quick)


if __name__ == "__main__":
    main()
