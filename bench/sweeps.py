"""Sweeps for the README's plots, on the benchmarks' own harnesses: hit and miss throughput and
p99 latency against wrk connections (hits beside the bare RSGI ceiling), and ingest throughput
against the consumer's batch size (beside the `psql \\copy` ceiling of the same rows).

    python -m bench.sweeps [--quick]    # writes bench/results/plots/*.svg too
"""

import argparse
import tempfile
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from bench import cli, http, ingest, preload
from bench.common import fresh_database, log, result
from bench.plots import save

CONNECTIONS = (16, 64, 256)
BATCH_SIZES = (500, 1000, 5000, 20000)


def http_series(quick: bool) -> dict[str, Any]:
    """Requests/s and p99 by connection count: hits, the ceiling (in our default layout),
    misses."""
    seconds = 2 if quick else 5
    with http.stored(5_000 if quick else 20_000) as data:
        hits = http.hit_phase(data, seconds, 1, CONNECTIONS)
        misses, _ = http.miss_phase(data, seconds, CONNECTIONS)
    runs = {
        "hit": {c: hits.ours[c][0] for c in CONNECTIONS},
        "ceiling": {c: hits.ceiling[c][0] for c in CONNECTIONS},
        "miss": misses,
    }
    return {
        name: {
            "requests_per_s": [round(by_conns[c].requests_per_s) for c in CONNECTIONS],
            "p99_ms": [round(by_conns[c].p99_ms, 3) for c in CONNECTIONS],
        }
        for name, by_conns in runs.items()
    }


def ingest_series(quick: bool) -> dict[str, Any]:
    """Orders/s by batch size from one preloaded topic (a new group and database each time)."""
    data = preload.preloaded(60_000 if quick else 200_000)
    total = len(data.orders)
    rates = []
    for size in BATCH_SIZES:
        env = {
            **data.env,
            "INGEST_BATCH_SIZE": str(size),
            "KAFKA_GROUP": f"{data.settings.kafka_group}-{size}",
        }
        settings = fresh_database(env, preload.DATABASE)
        rates.append(round(ingest.measure_consumer(settings, env, total)["orders_per_s"]))
        log(f"batch size {size:,}: {rates[-1]:,} orders/s")
    with tempfile.TemporaryDirectory() as workdir:
        ceiling = ingest.measure_ceiling(data.settings, data.orders, Path(workdir))
    return {"orders": total, "orders_per_s": rates, "ceiling_orders_per_s": round(ceiling)}


def figures(series: dict[str, Any]) -> dict[str, Any]:
    """One figure per point, so the table shows what the plots draw."""
    out: dict[str, Any] = {}
    hit, ceiling, miss = series["hit"], series["ceiling"], series["miss"]
    for i, conns in enumerate(series["connections"]):
        out[f"hit_c{conns}"] = {
            "value": hit["requests_per_s"][i],
            "unit": "requests/s",
            "ceiling": ceiling["requests_per_s"][i],
            "ratio": round(hit["requests_per_s"][i] / ceiling["requests_per_s"][i], 3),
        }
        out[f"hit_c{conns}_p99"] = {
            "value": hit["p99_ms"][i],
            "unit": "ms",
            "ceiling": ceiling["p99_ms"][i],
        }
        out[f"miss_c{conns}"] = {"value": miss["requests_per_s"][i], "unit": "requests/s"}
        out[f"miss_c{conns}_p99"] = {"value": miss["p99_ms"][i], "unit": "ms"}
    ingest_ceiling = series["ingest"]["ceiling_orders_per_s"]
    for size, rate in zip(series["batch_sizes"], series["ingest"]["orders_per_s"], strict=True):
        out[f"ingest_batch_{size}"] = {
            "value": rate,
            "unit": "orders/s",
            "ceiling": ingest_ceiling,
            "ratio": round(rate / ingest_ceiling, 3),
        }
    return out


def measure(quick: bool) -> dict[str, Any]:
    series = {
        "connections": list(CONNECTIONS),
        **http_series(quick),
        "batch_sizes": list(BATCH_SIZES),
        "ingest": ingest_series(quick),
    }
    parameters = {"connections": CONNECTIONS, "batch_sizes": BATCH_SIZES, "quick": quick}
    outcome = result("sweeps", parameters, figures(series))
    outcome["series"] = series
    return outcome


def _log_x(axes: Axes, ticks: list[int], labels: list[str]) -> None:
    """A log x axis labelled only at the measured points."""
    axes.set(xscale="log", xticks=ticks, xticklabels=labels)
    axes.xaxis.set_minor_locator(NullLocator())


def plot(outcome: dict[str, Any]) -> None:
    """bench/results/plots/http-connections.svg and ingest-batch-size.svg from a sweeps result."""
    series = outcome["series"]
    mode = " (quick mode)" if outcome["parameters"]["quick"] else ""
    conns = series["connections"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    throughput, latency = figure.subplots(1, 2)
    for name, label, style in (
        ("hit", "cache hit (ours)", "o-"),
        ("ceiling", "bare RSGI ceiling", "s--"),
        ("miss", "cache miss (ours)", "^-"),
    ):
        throughput.plot(conns, series[name]["requests_per_s"], style, label=label)
        latency.plot(conns, series[name]["p99_ms"], style, label=label)
    latency.axhline(http.BARS["miss_p99_ms"], color="black", linestyle=":", label="miss bar")
    throughput.set(
        ylabel="requests/s",
        ylim=(0, None),
        title=f"GET /order/{{uid}}, {http.DEFAULT_LAYOUT.label}{mode}",
    )
    latency.set(ylabel="p99 latency, ms", yscale="log", title="p99 latency (wrk --latency)")
    for axes in (throughput, latency):
        _log_x(axes, conns, [str(c) for c in conns])
        axes.set(xlabel="wrk connections")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    save(figure, "http-connections.svg")

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    sizes, data = series["batch_sizes"], series["ingest"]
    axes.plot(sizes, data["orders_per_s"], "o-", label="consumer (ours)")
    axes.axhline(data["ceiling_orders_per_s"], linestyle="--", label="psql \\copy ceiling")
    axes.axhline(ingest.BAR_ORDERS_PER_S, color="black", linestyle=":", label="bar 15,000/s")
    _log_x(axes, sizes, [f"{s:,}" for s in sizes])
    axes.set(
        xlabel="INGEST_BATCH_SIZE",
        ylabel="orders/s",
        ylim=(0, None),
        title=f"Ingest of {data['orders']:,} preloaded orders{mode}",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    save(figure, "ingest-batch-size.svg")


def measured_and_plotted(quick: bool) -> dict[str, Any]:
    outcome = measure(quick)
    plot(outcome)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer orders, 2 s wrk runs")
    cli.run("sweeps", parser, lambda a: measured_and_plotted(a.quick))


if __name__ == "__main__":
    main()
