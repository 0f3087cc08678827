"""`python -m bench`: every benchmark of docs/performance.md in one run, each with its ceiling.

Runs the modules in MODULES in order (each one's `measure(quick)`), logs progress, and writes
bench/results/<UTC timestamp>.json, latest.json and latest.md. A benchmark that fails is
recorded as failed and the others still run, but the exit status is then 1. `--plots` adds the
sweeps (bench/sweeps.py) and draws bench/results/plots/.

    python -m bench [--quick] [--plots]
"""

import argparse
import importlib
import json
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from bench import report
from bench.common import REPO, RESULTS, log, machine
from bench.processes import exit_on_sigterm

MODULES = ("ingest", "http", "e2e", "restart", "scaling")


def run_module(name: str, quick: bool) -> dict[str, Any]:
    """One benchmark's outcome: {status: ok|failed|skipped, seconds, result | error}."""
    started = time.perf_counter()
    try:
        outcome = importlib.import_module(f"bench.{name}").measure(quick)
    except Exception as exc:  # recorded and reported; the run goes on, then exits 1
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{where.filename.removeprefix(f'{REPO}/')}:{where.lineno}"
        error = f"{type(exc).__name__}: {exc} (at {place})"
        log(f"{name} FAILED: {error}")
        traceback.print_exc()
        return {
            "status": "failed",
            "seconds": round(time.perf_counter() - started, 1),
            "error": error,
            "traceback": traceback.format_exc(),
        }
    seconds = round(time.perf_counter() - started, 1)
    log(f"{name} done in {seconds:.0f} s")
    return {"status": "ok", "seconds": seconds, "result": outcome}


def commit() -> str:
    """The checkout measured: its commit, `-dirty` if it has uncommitted changes."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=12"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,  # a copy without .git is still measured; it says "unknown"
    )
    return described.stdout.strip() or "unknown"


def write(run: dict[str, Any]) -> str:
    """The run as <timestamp>.json and latest.json, its report as latest.md; return the report."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(run, indent=2) + "\n"
    stamp = datetime.fromisoformat(run["when"]).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    markdown = report.run_report(run)
    (RESULTS / "latest.md").write_text(markdown)
    log(f"wrote bench/results/{stamp}.json, latest.json and latest.md")
    return markdown


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    parser.add_argument("--plots", action="store_true", help="also the sweeps and their plots")
    args = parser.parse_args()
    exit_on_sigterm()
    names = [*MODULES, "sweeps"] if args.plots else list(MODULES)
    run: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": commit(),
        "machine": machine(),
        "benchmarks": {},
    }
    started = time.perf_counter()
    for number, name in enumerate(names, 1):
        log(f"[{number}/{len(names)}] {name}")
        run["benchmarks"][name] = run_module(name, args.quick)
    if args.plots and run["benchmarks"]["sweeps"]["status"] == "ok":
        from bench.sweeps import plot  # noqa: PLC0415 (matplotlib only when plotting)

        plot(run["benchmarks"]["sweeps"]["result"])
    run["seconds"] = round(time.perf_counter() - started, 1)
    print(write(run))
    failed = [name for name, b in run["benchmarks"].items() if b["status"] == "failed"]
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    log(f"all done in {run['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
