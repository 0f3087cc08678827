"""Helpers for the monitoring tests: the PromQL expressions the dashboard and the alert rules
use, the metric names they read, and a real Prometheus server (Debian's package) run on a
free port with its own configuration and data directory."""

import math
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "order-service.json"


class GridPos(msgspec.Struct):
    x: int
    y: int
    w: int
    h: int


class DataSource(msgspec.Struct):
    type: str
    uid: str


class Target(msgspec.Struct):
    refId: str  # noqa: N815 (Grafana's name)
    expr: str
    datasource: DataSource


class Panel(msgspec.Struct):
    id: int
    type: str
    title: str
    gridPos: GridPos  # noqa: N815 (Grafana's name)
    datasource: DataSource
    targets: list[Target]


class Dashboard(msgspec.Struct):
    uid: str
    title: str
    schemaVersion: int  # noqa: N815 (Grafana's name)
    panels: list[Panel]


def dashboard() -> Dashboard:
    return msgspec.json.decode(DASHBOARD.read_bytes(), type=Dashboard)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    return [target.expr for panel in dashboard().panels for target in panel.targets]


_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions (followed by
    '('), keywords, label names (in {...} or by/without (...)) or durations ([...])."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare))
    return {name for name in names if name.lower() not in _KEYWORDS}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prometheus_server(home: Path, target: str) -> Iterator[str]:
    """`prometheus` scraping `target` every second and evaluating our alert rules every
    second; yields its URL once it answers as ready."""
    config = home / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
                "scrape_configs": [
                    {"job_name": "order-service", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log = home / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Prometheus did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector `expr` gives now (an error from Prometheus fails the test)."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def has_finite_data(url: str, expr: str) -> bool:
    values = [float(sample["value"][1]) for sample in query(url, expr)]
    return bool(values) and not any(math.isnan(value) for value in values)
