"""Results as Markdown: one table row per figure (ours, ceiling, ratio, bar, met), the notes a
result carries, and a line naming the machine. Used by every benchmark's `main()` and by
`python -m bench` for latest.md."""

from textwrap import shorten
from typing import Any

ERROR_CHARS = 300  # the whole message and traceback are in the JSON
HEADER = [
    "| figure | ours | ceiling | ratio | bar | met |",
    "| --- | --- | --- | --- | --- | --- |",
]


def number(value: float, unit: str) -> str:
    if unit == "fraction":
        return f"{value:.1%}"
    shown = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"
    return f"{shown} {unit}"


def figure_row(label: str, figure: dict[str, Any]) -> str:
    unit = figure["unit"]
    ceiling = number(figure["ceiling"], unit) if "ceiling" in figure else ""
    if "ceiling_name" in figure:
        ceiling += f" ({figure['ceiling_name']})"
    ratio = f"{figure['ratio']:.1%}" if "ratio" in figure else ""
    met = "" if "met" not in figure else "yes" if figure["met"] else "**no**"
    cells = [label, number(figure["value"], unit), ceiling, ratio, figure.get("bar", ""), met]
    return "| " + " | ".join(cells) + " |"


def table(results: list[dict[str, Any]]) -> str:
    """Every figure of every result, labelled `<benchmark>: <figure>`."""
    rows = [
        figure_row(f"{outcome['benchmark']}: {name}", figure)
        for outcome in results
        for name, figure in outcome["figures"].items()
    ]
    return "\n".join(HEADER + rows)


def notes(results: list[dict[str, Any]]) -> str:
    """The Markdown notes some results carry (the layout sweep's table), after the table."""
    return "".join(
        f"\n\n{outcome['benchmark']}: {note}"
        for outcome in results
        for note in outcome.get("notes", [])
    )


def machine_line(facts: dict[str, Any]) -> str:
    return (
        f"{facts['cores']} cores, {facts['memory_gib']} GiB, {facts['cpu']}, {facts['os']}; "
        f"Python {facts['python']}, PostgreSQL {facts['postgresql']} "
        f"(shared_buffers {facts['postgresql_shared_buffers']}), Kafka {facts['kafka']} "
        f"(librdkafka {facts['librdkafka']}), granian {facts['granian']}"
    )


def run_report(run: dict[str, Any]) -> str:
    """latest.md: when and how the run went, the machine, then the table."""
    results = [b["result"] for b in run["benchmarks"].values() if b["status"] == "ok"]
    problems = [
        f"- **{name} {b['status']}**: {shorten(b['error'], ERROR_CHARS)}"
        for name, b in run["benchmarks"].items()
        if b["status"] != "ok"
    ]
    mode = "quick mode (`python -m bench --quick`)" if run["quick"] else "`python -m bench`"
    lines = [
        "# Benchmark results",
        "",
        f"{mode} of commit {run['commit']}, {run['when']}, {run['seconds']:.0f} s.",
        "",
        f"Machine: {machine_line(run['machine'])}.",
        "",
        table(results) + notes(results),
    ]
    if problems:
        lines += ["", *problems]
    return "\n".join(lines) + "\n"
