"""Faults injected into the real processes, PostgreSQL and Kafka: the consumer SIGKILLed at
random moments, PostgreSQL stopped during ingest, the broker stopped, an API worker killed, and
SIGTERM under load. Each test prints a `RELIABILITY` line with its counts (run with -s); the
README's Reliability table is filled from them."""

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from service.config import Settings, load_settings
from service.ingest.kafka import ensure_topics
from service.model import Order, encode_order
from tests.conftest import outage, service_process, service_url, wait_until_ready
from tests.http_load import HttpLoad, statuses
from tests.kafka_helpers import (
    REPO,
    PacedProducer,
    consumer_process,
    produce,
    read_all,
    scalar,
    topic_size,
    wait_for,
)
from tests.orders import random_orders, reference_dict
from tests.stored import stored_body
from tests.tcp_forward import FORWARDER, ready_addresses
from tests.test_api import store
from tests.test_ingest import stored_count

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[object, ...]]


def report(fault: str, **counts: object) -> None:
    print(f"\nRELIABILITY {fault}: " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


def items_count(db: Conn, uids: list[str]) -> int:
    return scalar(db, "SELECT count(*) FROM items WHERE order_uid = ANY(%s)", uids)


def assert_stored_exactly(db: Conn, orders: list[Order]) -> None:
    uids = [o.order_uid for o in orders]
    assert stored_count(db, uids) == len(set(uids))
    assert items_count(db, uids) == sum(len(o.items) for o in orders)


def uids_of(orders: list[Order]) -> list[str]:
    return [o.order_uid for o in orders]


def values_of(orders: list[Order]) -> list[bytes]:
    return [encode_order(o) for o in orders]


# --- SIGKILL during ingest ---------------------------------------------------------------

CRASH_VALID = 46_000
CRASH_DUPLICATES = 2_500
CRASH_INVALID = 1_500
CRASH_KILLS = 3


@dataclass(frozen=True)
class Stream:
    """A topic's worth of messages: valid orders, later second copies of some of them (with
    other content: the first write must win), and invalid messages, each one unique."""

    valid: list[Order]
    duplicates: list[Order]
    invalid: list[bytes]
    values: list[bytes]
    keys: list[str | None]


def _broken(index: int) -> bytes:
    marker = f"broken-{index}"
    match index % 5:
        case 0:
            return f'{{"order_uid": "{marker}", '.encode()
        case 1:
            return json.dumps(reference_dict(order_uid=marker, sm_id="ninety-nine")).encode()
        case 2:
            return json.dumps(reference_dict(order_uid=marker, items=[])).encode()
        case 3:
            return json.dumps(reference_dict(order_uid=marker, customer_id="a\u0000b")).encode()
        case _:
            return b"\xff\xfe" + marker.encode() + os.urandom(16)


def mixed_stream(rng: random.Random) -> Stream:
    valid = random_orders(CRASH_VALID, seed=70)
    originals = rng.sample(range(CRASH_VALID), CRASH_DUPLICATES)
    duplicates = [msgspec.structs.replace(valid[i], customer_id="second-copy") for i in originals]
    invalid = [_broken(i) for i in range(CRASH_INVALID)]
    # Sort keys: a valid order at its index, its copy somewhere after it, invalid ones anywhere.
    placed: list[tuple[float, bytes, str | None]] = [
        (i, encode_order(o), o.order_uid) for i, o in enumerate(valid)
    ]
    placed += [
        (rng.uniform(i, CRASH_VALID), encode_order(d), d.order_uid)
        for i, d in zip(originals, duplicates, strict=True)
    ]
    placed += [(rng.uniform(0, CRASH_VALID), raw, None) for raw in invalid]
    placed.sort(key=lambda entry: entry[0])
    return Stream(valid, duplicates, invalid, [v for _, v, _ in placed], [k for _, _, k in placed])


def kill_at_random_moments(env: dict[str, str], db: Conn, stream: Stream) -> int:
    """Run the consumer and SIGKILL it CRASH_KILLS times, each after a random number of
    stored orders plus a random fraction of a second; return how many were stored then."""
    rng = random.Random(71)
    uids = uids_of(stream.valid)
    thresholds = sorted(rng.sample(range(2_000, int(CRASH_VALID * 0.8)), CRASH_KILLS))
    stored = 0
    for threshold in thresholds:
        with consumer_process(env) as process:
            # A restart waits for the group to drop the killed member (its session timeout).
            wait_for(lambda: stored_count(db, uids) >= threshold, 120, f"{threshold} stored")  # noqa: B023
            time.sleep(rng.uniform(0, 0.3))
            process.send_signal(signal.SIGKILL)
            process.wait()
        stored = stored_count(db, uids)
        assert stored < len(uids), "killed too late to prove anything"
    return stored


@pytest.mark.slow
def test_sigkill_at_random_moments_stores_every_valid_order_once_and_dead_letters_the_rest(
    service_env: dict[str, str], settings: Settings, db: Conn
) -> None:
    stream = mixed_stream(random.Random(70))
    env = {**service_env, "INGEST_BATCH_SIZE": "500"}
    ensure_topics(load_settings(env))
    produce(settings.kafka_brokers, env["KAFKA_TOPIC"], stream.values, stream.keys)
    stored_before_last_restart = kill_at_random_moments(env, db, stream)
    uids = uids_of(stream.valid)
    dlq = env["KAFKA_DLQ_TOPIC"]
    with consumer_process(env):
        wait_for(lambda: stored_count(db, uids) == len(uids), 180, "every valid order stored")
        wait_for(lambda: topic_size(settings.kafka_brokers, dlq) >= CRASH_INVALID, 60, "DLQ")
    assert_stored_exactly(db, stream.valid)
    first_copies = {o.order_uid: o for o in stream.valid}
    for copy in stream.duplicates:
        body = stored_body(db, copy.order_uid)
        assert body == encode_order(first_copies[copy.order_uid]), "a later copy overwrote"
    assert stored_count(db, [f"broken-{i}" for i in range(CRASH_INVALID)]) == 0
    dead = read_all(settings.kafka_brokers, dlq, topic_size(settings.kafka_brokers, dlq))
    dead_values = [m.value() for m in dead]
    assert set(dead_values) == set(stream.invalid), "the DLQ holds exactly the invalid ones"
    report(
        "sigkill",
        messages=len(stream.values),
        valid=len(stream.valid),
        duplicates=len(stream.duplicates),
        invalid=len(stream.invalid),
        kills=CRASH_KILLS,
        not_stored_at_last_kill=len(uids) - stored_before_last_restart,
        stored=stored_count(db, uids),
        dead_letters=len(set(dead_values)),
        dead_letters_redelivered=len(dead_values) - len(set(dead_values)),
        lost=len(uids) - stored_count(db, uids) + len(set(stream.invalid) - set(dead_values)),
    )


# --- PostgreSQL and Kafka outages --------------------------------------------------------


@dataclass(frozen=True)
class Cached:
    """Paths of orders the cache holds."""

    uids: list[str]

    def __call__(self, rng: random.Random) -> str:
        return f"/order/{rng.choice(self.uids)}"


def unknown(rng: random.Random) -> str:
    """The path of an order nobody stored: a miss."""
    return f"/order/unknown-{rng.getrandbits(64):x}"


def cached_orders(url: str, orders: list[Order]) -> list[str]:
    """Ids of `orders`, each fetched once so it is in the cache whatever the consumer did."""
    for order in orders:
        assert httpx.get(f"{url}/order/{order.order_uid}").status_code == 200
    return uids_of(orders)


def stored_now(settings: Settings, uids: list[str]) -> int:
    """stored_count on a new connection: PostgreSQL restarts in between."""
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
        return stored_count(db, uids)


@pytest.mark.slow
def test_postgresql_down_for_ten_seconds_during_ingest_loses_nothing(
    service_env: dict[str, str], settings: Settings
) -> None:
    env = {**service_env, "INGEST_BATCH_SIZE": "200"}
    url = service_url(env)
    first, streamed = random_orders(500, seed=72), random_orders(6_000, seed=73)
    uids = uids_of(streamed)
    with service_process(env, "run") as service:
        wait_until_ready(url)
        produce(settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(first), uids_of(first))
        wait_for(lambda: stored_now(settings, uids_of(first)) == len(first), what="first stored")
        hits = Cached(cached_orders(url, first[:100]))
        with (
            HttpLoad(url, hits, threads=2) as hit_load,
            HttpLoad(url, unknown, threads=1) as miss_load,
            PacedProducer(
                settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(streamed), uids, seconds=18
            ) as producer,
        ):
            time.sleep(3)
            stored_at_stop = stored_now(settings, uids)
            began = time.monotonic()
            with outage(settings, "postgres.sh", "stop", "start") as down_at:
                time.sleep(11)
                up_at = time.monotonic()
                sent_during_outage = producer.sent
            recovered_at = time.monotonic()
            wait_for(lambda: stored_now(settings, uids) == len(streamed), 120, "all stored")
            time.sleep(2)
        assert service.poll() is None, "the service died"
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
        assert_stored_exactly(db, first + streamed)
    assert topic_size(settings.kafka_brokers, env["KAFKA_DLQ_TOPIC"]) == 0
    during_hits = hit_load.outcomes(down_at + 1, up_at)
    during_misses = miss_load.outcomes(down_at + 1, up_at)
    assert during_hits
    assert during_misses
    assert statuses(during_hits) == {200: len(during_hits)}
    assert statuses(during_misses) == {503: len(during_misses)}
    assert statuses(hit_load.outcomes()) == {200: hit_load.count()}, "a hit failed"
    after_misses = miss_load.outcomes(recovered_at + 2)
    assert statuses(after_misses) == {404: len(after_misses)}
    assert None not in statuses(miss_load.outcomes()), "a request got no answer"
    report(
        "postgres_outage",
        stopped_s=round(up_at - down_at, 1),
        unavailable_s=round(recovered_at - began, 1),
        orders=len(first) + len(streamed),
        in_flight=sent_during_outage - stored_at_stop,
        lost=len(streamed) - stored_now(settings, uids),
        dead_lettered=0,
        hits_200_during=len(during_hits),
        misses_503_during=len(during_misses),
        requests=hit_load.count() + miss_load.count(),
        unanswered=0,
    )


@pytest.mark.slow
def test_postgresql_that_stops_answering_fails_misses_with_503_and_hits_go_on(
    service_env: dict[str, str], settings: Settings
) -> None:
    """PostgreSQL reached through a forwarder that is then frozen: connections stay open and
    nothing comes back, the case a stopped server or a refused connection does not cover."""
    orders = random_orders(3, seed=74)
    cached, missed, later = (order.order_uid for order in orders)
    forwarder = subprocess.Popen(
        [*FORWARDER, f"127.0.0.1:0=127.0.0.1:{settings.postgres_port}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = ready_addresses(forwarder)[0].rpartition(":")[2]
        env = {**service_env, "POSTGRES_PORT": port}
        url = service_url(env)
        with service_process(env, "serve") as service:
            wait_until_ready(url)
            store(settings, orders)  # after the warm-up: in the database, not in the cache
            assert httpx.get(f"{url}/order/{cached}").status_code == 200
            forwarder.send_signal(signal.SIGSTOP)
            try:
                began = time.monotonic()
                misses = [httpx.get(f"{url}/order/{uid}", timeout=30) for uid in (missed, later)]
                waited = time.monotonic() - began
                hit = httpx.get(f"{url}/order/{cached}", timeout=30)
                ready = httpx.get(f"{url}/readyz", timeout=30)
            finally:
                forwarder.send_signal(signal.SIGCONT)
            assert [miss.status_code for miss in misses] == [503, 503]
            assert "did not answer within" in misses[0].json()["detail"]
            assert hit.status_code == 200
            assert ready.status_code == 503
            wait_for(
                lambda: httpx.get(f"{url}/order/{missed}", timeout=30).status_code == 200,
                60,
                "misses answered again once PostgreSQL answers",
            )
            assert httpx.get(f"{url}/order/{later}").status_code == 200
            assert service.poll() is None, "the service died"
    finally:
        forwarder.kill()
        forwarder.wait()
        forwarder.stdout.close()  # type: ignore[union-attr]
    report("postgres_hangs", misses_503=2, seconds_for_both=round(waited, 1), hits_200=1)


@pytest.mark.slow
def test_kafka_down_during_ingest_the_consumer_resumes_and_the_api_keeps_serving(
    service_env: dict[str, str], settings: Settings, db: Conn
) -> None:
    env = {**service_env, "INGEST_BATCH_SIZE": "200"}
    url = service_url(env)
    cached, streamed = random_orders(100, seed=74), random_orders(6_000, seed=75)
    uids = uids_of(streamed)
    store(settings, cached)
    with service_process(env, "run") as service:
        wait_until_ready(url)
        hits = Cached(cached_orders(url, cached))
        with (
            HttpLoad(url, hits, threads=2) as hit_load,
            HttpLoad(url, unknown, threads=1) as miss_load,
            PacedProducer(
                settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(streamed), uids, seconds=15
            ) as producer,
        ):
            wait_for(lambda: stored_count(db, uids) > 500, what="ingest under way")
            stored_at_stop = stored_count(db, uids)
            began = time.monotonic()
            with outage(settings, "kafka.sh", "down", "up") as down_at:
                time.sleep(5)
                up_at = time.monotonic()
                sent_by_restart = producer.sent
            recovered_at = time.monotonic()
            wait_for(lambda: stored_count(db, uids) == len(streamed), 120, "all stored")
        assert service.poll() is None, "the service died"
    assert_stored_exactly(db, streamed)
    assert topic_size(settings.kafka_brokers, env["KAFKA_DLQ_TOPIC"]) == 0
    assert statuses(hit_load.outcomes()) == {200: hit_load.count()}
    assert statuses(miss_load.outcomes()) == {404: miss_load.count()}
    during = hit_load.outcomes(down_at, recovered_at) + miss_load.outcomes(down_at, recovered_at)
    report(
        "kafka_outage",
        stopped_s=round(up_at - down_at, 1),
        unavailable_s=round(recovered_at - began, 1),
        orders=len(streamed),
        in_flight=sent_by_restart - stored_at_stop,
        lost=len(streamed) - stored_count(db, uids),
        requests=hit_load.count() + miss_load.count(),
        requests_during=len(during),
        failed_requests=0,
    )


# --- API worker killed -------------------------------------------------------------------


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


@dataclass(frozen=True)
class HitOrFill:
    """Half cached orders, half stored ones the cache does not hold yet (filled on the miss)."""

    hits: list[str]
    fills: list[str]

    def __call__(self, rng: random.Random) -> str:
        return f"/order/{rng.choice(self.hits if rng.random() < 0.5 else self.fills)}"


@pytest.mark.slow
def test_a_killed_api_worker_is_replaced_and_the_other_keeps_answering(
    service_env: dict[str, str], settings: Settings
) -> None:
    warm, fills, late = (random_orders(n, seed=s) for n, s in ((200, 76), (2_000, 77), (50, 78)))
    store(settings, warm)
    url = service_url(service_env)
    with service_process({**service_env, "HTTP_WORKERS": "2"}, "serve") as service:
        wait_until_ready(url)
        store(settings, fills)
        (granian,) = children(service.pid)
        workers = children(granian)
        assert len(workers) == 2
        with HttpLoad(url, HitOrFill(uids_of(warm), uids_of(fills)), threads=4, retries=1) as load:
            time.sleep(1)
            killed_at = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)
            wait_for(lambda: len(set(children(granian)) - set(workers)) == 1, 30, "respawn")
            replaced_at = time.monotonic()
            time.sleep(1.5)
        store(settings, late)
        for order in late:  # a miss fills the shared cache, the next request hits it
            for _ in range(2):
                assert httpx.get(f"{url}/order/{order.order_uid}").content == encode_order(order)
    outcomes = load.outcomes()
    while_one_worker = load.outcomes(killed_at, replaced_at)
    retried = [o for o in outcomes if o.attempts > 1]
    assert statuses(outcomes) == {200: len(outcomes)}, "every request answered 200"
    assert len([o for o in while_one_worker if o.attempts == 1]) > 0
    report(
        "worker_sigkill",
        requests=len(outcomes),
        answered_while_one_worker=len(while_one_worker),
        respawn_s=round(replaced_at - killed_at, 1),
        reset_and_retried=len(retried),
        lost=0,
    )


# --- SIGTERM under load ------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_under_ingest_and_http_load_completes_in_flight_work_and_loses_nothing(
    service_env: dict[str, str], settings: Settings, db: Conn
) -> None:
    env = {**service_env, "INGEST_BATCH_SIZE": "200"}
    url = service_url(env)
    cached, stored, streamed = (
        random_orders(n, seed=s) for n, s in ((100, 79), (2_000, 80), (20_000, 81))
    )
    store(settings, cached)
    ensure_topics(load_settings(env))
    with service_process(env, "serve") as api:
        wait_until_ready(url)  # the cache region exists now: the consumer fills it
        store(settings, stored)
        load = HttpLoad(url, HitOrFill(uids_of(cached), uids_of(stored)), threads=4)
        with consumer_process(env) as consumer, load:
            time.sleep(1)
            produce(
                settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(streamed), uids_of(streamed)
            )
            wait_for(lambda: stored_count(db, uids_of(streamed)) > 1_000, what="ingest under way")
            sigterm_at = time.monotonic()
            consumer.send_signal(signal.SIGTERM)
            api.send_signal(signal.SIGTERM)
            assert consumer.wait(60) == 0
            assert api.wait(60) == 0
            stopped_at = time.monotonic()
    stored_at_stop = stored_count(db, uids_of(streamed))
    in_flight = [o for o in load.outcomes() if o.started < sigterm_at < o.ended]
    before = load.outcomes(until=sigterm_at) + in_flight
    assert statuses(before) == {200: len(before)}, "a request in flight was not answered"
    with consumer_process(env):
        wait_for(lambda: stored_count(db, uids_of(streamed)) == len(streamed), what="rest stored")
    assert_stored_exactly(db, streamed)
    report(
        "sigterm",
        orders=len(streamed),
        stored_before_stop=stored_at_stop,
        orders_in_flight=len(streamed) - stored_at_stop,
        requests_in_flight=len(in_flight),
        requests_answered=len(before),
        stop_s=round(stopped_at - sigterm_at, 1),
        lost=len(streamed) - stored_count(db, uids_of(streamed)),
    )
