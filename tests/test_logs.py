"""LOG_FORMAT=json: one JSON object per line from the consumer, the runner and granian's
processes, with the consumer's progress figures as fields; text stays the default."""

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from service.config import Settings
from service.errors import OPERATOR_ERROR_EXIT
from service.model import encode_order
from service.observability.logs import JsonFormatter, TextFormatter
from tests.fix_db import scalar
from tests.fix_kafka import produce
from tests.fix_processes import REPO, service_url, wait_for, wait_until_ready
from tests.orders import random_orders


def record(message: str, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("service.x", logging.INFO, __file__, 1, message, None, None)
    made.fields = fields
    return made


def test_a_json_line_carries_the_records_fields() -> None:
    line = json.loads(JsonFormatter().format(record("ingest progress", stored=3, lag=0)))
    assert line["ts"].endswith("+00:00")
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "service.x",
        "ingest progress",
    )
    assert (line["stored"], line["lag"]) == (3, 0)


def test_a_json_line_carries_the_traceback() -> None:
    try:
        int("boom")
    except ValueError:
        failed = logging.LogRecord(
            "service.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(failed))
    assert "ValueError: invalid literal for int()" in line["exc"]


def test_a_text_line_ends_with_the_fields_as_json() -> None:
    line = TextFormatter().format(record("ingest progress", stored=3))
    assert line.endswith('ingest progress {"stored": 3}')


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as a JSON object (failing on the first that is not one)."""
    lines = []
    for text in output.splitlines():
        if text.strip():
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {text!r}")
            assert {"ts", "level", "logger", "message"} <= line.keys(), text
            lines.append(line)
    return lines


@pytest.mark.integration
def test_the_consumer_logs_json_with_its_progress_figures(
    service_env: dict[str, str], settings: Settings
) -> None:
    env = {**service_env, "LOG_FORMAT": "json"}
    orders = random_orders(3, seed=4)
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "consume"],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
            uids = [o.order_uid for o in orders]
            # The consumer creates the topic at start; it reads from the earliest offset.
            wait_for(
                lambda: topic_exists(settings.kafka_brokers, env["KAFKA_TOPIC"]),
                what="the topic created",
            )
            produce(
                settings.kafka_brokers,
                env["KAFKA_TOPIC"],
                [encode_order(o) for o in orders] + [b"{"],
            )
            wait_for(
                lambda: (
                    scalar(db, "SELECT count(*) FROM orders WHERE order_uid = ANY(%s)", uids) == 3
                ),
                what="the orders stored",
            )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    lines = json_lines(stderr)
    (last,) = [line for line in lines if line["message"] == "ingest progress"][-1:]
    assert (last["consumed"], last["stored"], last["dead_lettered"]) == (
        4,
        3,
        {"malformed_json": 1},
    )
    assert isinstance(last["stored_per_s"], float)


def topic_exists(brokers: str, topic: str) -> bool:
    return topic in AdminClient({"bootstrap.servers": brokers}).list_topics(timeout=5).topics


@pytest.mark.integration
def test_serve_and_granian_log_json(service_env: dict[str, str], settings: Settings) -> None:
    env = {**service_env, "LOG_FORMAT": "json", "HTTP_WORKERS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_ready(service_url(env))
        assert httpx.get(f"{service_url(env)}/healthz").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    lines = json_lines(stdout + stderr)
    loggers = {line["logger"] for line in lines}
    assert "_granian" in loggers, loggers
    assert any(line["logger"].startswith("service") for line in lines), loggers


def test_a_start_refused_in_json_mode_says_so_in_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate", "version"],
        env={"HTTP_PORT": "eighty", "LOG_FORMAT": "json", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(REPO),
    )
    assert result.returncode == OPERATOR_ERROR_EXIT
    (line,) = json_lines(result.stderr)
    assert line["level"] == "CRITICAL"
    assert line["message"].startswith("Config 'HTTP_PORT' has value 'eighty'")
