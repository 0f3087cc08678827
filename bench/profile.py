"""py-spy flamegraphs (SVG) of the consumer under ingest load and of the API workers under hit
and under miss load, on the benchmarks' own set-ups (bench/preload.py, bench/http.py).

py-spy attaches to the running process with --subprocesses (the API's granian workers are
children of `python -m service serve`) once the load has started, and stops when it ends:
    consumer-ingest.svg  `python -m service consume` draining a preloaded topic into the
                         database and a cache region
    api-hit.svg          the workers under wrk, every order cached
    api-miss.svg         the workers under wrk, a 1,000-order cache (nearly every GET a miss)

    python -m bench.profile [--only consumer|hit|miss] [--out DIR] [--quick]
"""

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench import http, preload
from bench.common import REPO, log
from bench.processes import exit_on_sigterm

RATE_HZ = 250
ATTACH_S = 1.0
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
        preload.wait_stored(conn, process, 1)
        with recording(process.pid, out / "consumer-ingest.svg"):
            preload.wait_stored(conn, process, len(data.orders))


def api(out: Path, quick: bool, kind: str) -> None:
    seconds = 5 if quick else 15
    with http.stored(5_000 if quick else 20_000) as data:
        cache_size = len(data.orders) if kind == "hit" else http.MISS_CACHE_SIZE
        with (
            http.serving(data.env, cache_size) as (url, process),
            recording(process.pid, out / f"api-{kind}.svg"),
        ):
            log(http.describe(kind, http.run_wrk(url, data.uids_file, seconds)))


PROFILES: dict[str, Callable[[Path, bool], None]] = {
    "consumer": consumer,
    "hit": lambda out, quick: api(out, quick, "hit"),
    "miss": lambda out, quick: api(out, quick, "miss"),
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
