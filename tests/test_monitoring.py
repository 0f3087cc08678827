"""The operators' view, checked with the real tools: promtool accepts the Prometheus config,
the alert rules (and their unit tests) and a live /metrics; a real Prometheus scraping a
running service answers every expression of the Grafana dashboard with data and has data for
every metric the alert rules read; the dashboard JSON has the structure Grafana needs; the
compose file is valid."""

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml  # type: ignore[import-untyped]

from service.config import Settings
from service.model import encode_order
from tests.fix_db import stored_count
from tests.fix_kafka import produce
from tests.fix_processes import free_port, service_process, service_url, wait_for, wait_until_ready
from tests.monitoring import (
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    REPO,
    dashboard,
    dashboard_expressions,
    has_finite_data,
    metric_names,
    prometheus_server,
    query,
    rules,
)
from tests.orders import random_orders


def promtool(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["promtool", *args],
        cwd=PROMETHEUS_DIR,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_accepts_the_config_the_rules_and_their_unit_tests() -> None:
    promtool("check", "config", "prometheus.yml")
    promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def test_the_rules_cover_what_operators_asked_for() -> None:
    assert {rule["alert"] for rule in rules()} >= {
        "ConsumerLagGrowing",
        "OrdersDeadLettered",
        "PostgresUnreachable",
        "NoIngestWhileTopicGrows",
    }
    for rule in rules():
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]


def test_the_dashboard_has_the_structure_grafana_needs() -> None:
    board = dashboard()
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in provisioned}
    ids = [panel.id for panel in board.panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in board.panels:
        grid = panel.gridPos
        assert grid.x >= 0, panel.title
        assert 0 < grid.w <= 24 - grid.x, panel.title
        area = {
            (x, y) for x in range(grid.x, grid.x + grid.w) for y in range(grid.y, grid.y + grid.h)
        }
        assert not area & cells, f"{panel.title!r} overlaps another panel"
        cells |= area
        assert panel.datasource.uid in uids, panel.title
        assert panel.targets, panel.title
        ref_ids = [target.refId for target in panel.targets]
        assert len(ref_ids) == len(set(ref_ids)), panel.title
        assert all(target.datasource.uid in uids for target in panel.targets), panel.title
    titles = " ".join(panel.title.lower() for panel in board.panels)
    for topic in ("stored", "lag", "dead letters", "batch latency", "hit ratio", "cache entries"):
        assert topic in titles, topic
    assert "requests per second by status" in titles
    assert "request latency" in titles


def test_the_compose_file_is_valid() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose missing: run infra/test-deps.sh"
    result = subprocess.run(
        [compose, "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {"prometheus", "grafana"} <= services.keys()
    assert services["service"]["environment"]["METRICS_PORT"] == 9464


@pytest.mark.integration
def test_a_real_prometheus_answers_the_dashboard_and_the_rules_from_a_running_service(
    service_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = {**service_env, "METRICS_PORT": str(metrics_port), "HTTP_WORKERS": "1"}
    url = service_url(env)
    orders = random_orders(4, seed=99)
    with service_process(env, "run"):
        wait_until_ready(url)
        with prometheus_server(tmp_path, f"127.0.0.1:{metrics_port}") as prometheus:
            wait_for(
                lambda: bool(query(prometheus, 'up{job="order-service"} == 1')),
                seconds=60,
                what="Prometheus scraping the service",
            )
            # Traffic after the first scrape, so every rate() has a change to see.
            produce(settings.kafka_brokers, env["KAFKA_TOPIC"], [encode_order(o) for o in orders])
            produce(settings.kafka_brokers, env["KAFKA_TOPIC"], [b"not an order"])
            with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
                uids = [o.order_uid for o in orders]
                wait_for(lambda: stored_count(db, uids) == len(uids), what="the orders stored")
            for order in orders:
                assert httpx.get(f"{url}/order/{order.order_uid}").status_code == 200
            assert httpx.get(f"{url}/order/{uuid.uuid4().hex}").status_code == 404
            # Routed by Litestar, whose requests the latency histogram times.
            assert httpx.get(f"{url}/orders").status_code == 200
            assert httpx.get(f"{url}/healthz").status_code == 200

            live = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            promtool("check", "metrics", stdin=live)

            expressions = dashboard_expressions()
            deadline = time.monotonic() + 90
            while missing := [e for e in expressions if not has_finite_data(prometheus, e)]:
                assert time.monotonic() < deadline, f"no data for {missing}"
                time.sleep(1)

            for rule in rules():
                query(prometheus, rule["expr"])  # evaluates without an error
                for name in metric_names(rule["expr"]):
                    assert query(prometheus, f"count({name})"), f"{rule['alert']}: no {name}"
            wait_for(
                lambda: bool(query(prometheus, 'ALERTS{alertname="OrdersDeadLettered"}')),
                seconds=60,
                what="OrdersDeadLettered raised for the refused message",
            )
