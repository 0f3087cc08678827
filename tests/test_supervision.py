"""The runner keeps the API up when the consumer dies: a dead consumer is restarted and resumes
from its committed offsets; one that keeps dying makes the service stop with a clear message."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from service.config import Settings
from service.errors import OPERATOR_ERROR_EXIT, ConsumerCrashLoop, ConsumerStopped
from service.run import consumer_state
from service.run.supervisor import CRASH_LOOP_DEATHS, ConsumerSupervisor
from tests.fix_db import stored_now
from tests.fix_kafka import produce, topic_size
from tests.fix_load import Cached, cached_orders, metric, report, uids_of, unknown, values_of
from tests.fix_processes import REPO, service_process, service_url, wait_for, wait_until_ready
from tests.http_load import HttpLoad, statuses
from tests.orders import random_orders


def consumer(url: str) -> dict[str, Any]:
    """The consumer's state from /readyz's body."""
    state: dict[str, Any] = httpx.get(f"{url}/readyz", timeout=10).json()["consumer"]
    return state


def committed(settings: Settings, group: str, topic: str) -> int:
    """The sum of `group`'s committed offsets on `topic` (fetched without joining the group)."""
    reader = Consumer({"bootstrap.servers": settings.kafka_brokers, "group.id": group})
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = reader.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(0, tp.offset) for tp in offsets)
    finally:
        reader.close()


def wait_for_wakeup(supervisor: ConsumerSupervisor) -> None:
    """Block as the runner does: until the consumer exits or its restart is due."""
    exit_fd, restart_in = supervisor.wakeup()
    ready, _, _ = select.select([exit_fd] if exit_fd is not None else [], [], [], restart_in)
    assert ready or restart_in is not None


def test_a_consumer_that_dies_at_once_is_restarted_with_backoff_then_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restart policy alone, with a real process that exits as soon as it starts."""
    monkeypatch.setattr(consumer_state, "STATE_FILE", tmp_path / "consumer-state.json")
    supervisor = ConsumerSupervisor([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    seen: list[str] = []

    def note_state() -> None:
        state = consumer_state.read()
        assert state is not None
        if not seen or seen[-1] != state.state:
            seen.append(state.state)

    def supervise() -> None:
        note_state()
        while True:
            supervisor.check()
            note_state()
            wait_for_wakeup(supervisor)

    with pytest.raises(ConsumerCrashLoop, match=rf"died {CRASH_LOOP_DEATHS} times") as error:
        supervise()
    assert "last exit code 3" in str(error.value)
    assert seen == ["running", "restarting"] * (CRASH_LOOP_DEATHS - 1) + ["running"]
    final = consumer_state.read()
    assert final is not None
    assert (final.state, final.restarts, final.last_exit_code) == (
        "stopped",
        CRASH_LOOP_DEATHS - 1,
        3,
    )


def test_a_consumer_stopped_by_an_operator_error_is_not_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_state, "STATE_FILE", tmp_path / "consumer-state.json")
    exits = f"raise SystemExit({OPERATOR_ERROR_EXIT})"
    supervisor = ConsumerSupervisor([sys.executable, "-c", exits], dict(os.environ))
    wait_for_wakeup(supervisor)
    with pytest.raises(ConsumerStopped, match="only an operator can fix"):
        supervisor.check()
    final = consumer_state.read()
    assert final is not None
    assert (final.state, final.restarts, final.last_exit_code) == ("stopped", 0, 78)


@pytest.mark.integration
@pytest.mark.slow
def test_sigkilled_consumer_is_restarted_under_http_load_and_resumes_from_committed_offsets(
    service_env: dict[str, str], settings: Settings
) -> None:
    env = {**service_env, "INGEST_BATCH_SIZE": "100"}
    url, topic, group = service_url(env), env["KAFKA_TOPIC"], env["KAFKA_GROUP"]
    first, second = random_orders(400, seed=90), random_orders(400, seed=91)
    with service_process(env, "run") as service:
        wait_until_ready(url)
        produce(settings.kafka_brokers, topic, values_of(first), uids_of(first))
        wait_for(lambda: committed(settings, group, topic) == len(first), what="first committed")
        assert stored_now(settings, uids_of(first)) == len(first)
        old = consumer(url)
        assert (old["state"], old["restarts"]) == ("running", 0)
        hits = Cached(cached_orders(url, first[:100]))
        with HttpLoad(url, hits, threads=2) as hit_load, HttpLoad(url, unknown) as miss_load:
            wait_for(lambda: hit_load.count() > 50 and miss_load.count() > 20, what="load")
            os.kill(old["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: consumer(url)["restarts"] == 1, what="the consumer restarted")
            restarted_at = time.monotonic()
            new = consumer(url)
            assert new["state"] == "running"
            assert new["pid"] != old["pid"]
            assert new["last_exit_code"] == -signal.SIGKILL
            produce(settings.kafka_brokers, topic, values_of(second), uids_of(second))
            wait_for(
                lambda: stored_now(settings, uids_of(second)) == len(second),
                120,
                "second stored by the new consumer",
            )
            resumed_at = time.monotonic()
        assert service.poll() is None, "the service died with its consumer"
        assert metric(url, "consumer_up") == 1
        assert metric(url, "consumer_restarts_total") == 1
        # Every order stored once, and none of the first batch read again: the new consumer
        # started from the committed offsets, not from the topic's start.
        assert metric(url, "orders_stored_total") == len(first) + len(second)
        duplicates = metric(url, "orders_duplicate_total")
        assert duplicates == 0
        assert committed(settings, group, topic) == topic_size(settings.kafka_brokers, topic)
        for order in second[:20]:
            assert httpx.get(f"{url}/order/{order.order_uid}").status_code == 200
    during = hit_load.outcomes(killed_at, resumed_at) + miss_load.outcomes(killed_at, resumed_at)
    answers = statuses(hit_load.outcomes()) + statuses(miss_load.outcomes())
    report(
        "consumer_sigkill_under_http_load",
        orders=len(first) + len(second),
        restarted_after_s=round(restarted_at - killed_at, 1),
        second_stored_after_s=round(resumed_at - killed_at, 1),
        requests=hit_load.count() + miss_load.count(),
        requests_until_resumed=len(during),
        failed=sum(n for status, n in answers.items() if status not in (200, 404)),
        redelivered=int(duplicates),
    )
    assert len(during) > 0
    assert statuses(hit_load.outcomes()) == {200: hit_load.count()}, "a hit failed"
    assert statuses(miss_load.outcomes()) == {404: miss_load.count()}, "a miss failed"


@pytest.mark.integration
def test_a_crash_looping_consumer_stops_the_service_with_a_clear_message_and_exit_code(
    service_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """The test kills each consumer the runner starts, as soon as /readyz names it."""
    url = service_url(service_env)
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "service", "run"], env=service_env, cwd=REPO, stderr=log
        )
        try:
            wait_until_ready(url)
            for death in range(CRASH_LOOP_DEATHS):
                started = wait_for_consumer(url, service, restarts=death)
                os.kill(started["pid"], signal.SIGKILL)
            assert service.wait(60) == 1
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
    text = log_path.read_text()
    assert f"error: the consumer died {CRASH_LOOP_DEATHS} times within 60 s" in text
    assert "fix that and start the service again" in text


def wait_for_consumer(
    url: str, service: "subprocess.Popen[bytes]", restarts: int, seconds: float = 60.0
) -> dict[str, Any]:
    """/readyz's consumer once it runs after `restarts` restarts; the service must stay up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert service.poll() is None, "the service stopped too early"
        state = consumer(url)
        if state["state"] == "running" and state["restarts"] == restarts:
            return state
        time.sleep(0.1)
    raise AssertionError(f"no consumer running after {restarts} restarts within {seconds:.0f} s")
