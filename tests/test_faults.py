"""Faults injected into the real processes, PostgreSQL and Kafka: the consumer SIGKILLed
mid-stream and mid-write, PostgreSQL stopped during ingest, the broker stopped, an API worker killed, and
SIGTERM under load. Each test prints a `RELIABILITY` line with its counts (run with -s); the
README's Reliability table is filled from them."""

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from service.config import Settings, load_settings
from service.ingest.kafka import ensure_topics
from service.model import Order, encode_order
from tests.fix_db import (
    Conn,
    assert_stored_exactly,
    scalar,
    store,
    stored_body,
    stored_count,
    stored_now,
)
from tests.fix_kafka import DeadLetters, PacedProducer, produce, topic_size
from tests.fix_load import Cached, answered_404, cached_orders, report, uids_of, unknown, values_of
from tests.fix_processes import (
    REPO,
    outage,
    service_process,
    service_url,
    wait_for,
    wait_until_ready,
)
from tests.http_load import HeldGets, HttpLoad, IdleConnection, statuses, unread_request_bytes
from tests.orders import random_orders, reference_dict
from tests.tcp_forward import FORWARDER, ready_addresses

pytestmark = pytest.mark.integration


# --- SIGKILL during ingest ---------------------------------------------------------------

CRASH_VALID = 46_000
CRASH_DUPLICATES = 2_500
CRASH_INVALID = 1_500
CRASH_KILLS = 4


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


class Stages:
    """Feeds a stream to the topic in slices, so a consumer never has the whole of it: however
    fast it is, a kill while only a prefix exists is a kill mid-stream."""

    def __init__(self, brokers: str, topic: str, stream: Stream) -> None:
        self._brokers, self._topic, self._stream = brokers, topic, stream
        self.produced = 0
        self._valid = {o.order_uid for o in stream.valid}

    def produce_until(self, end: int) -> None:
        end = min(end, len(self._stream.values))
        if end > self.produced:
            values = self._stream.values[self.produced : end]
            produce(self._brokers, self._topic, values, self._stream.keys[self.produced : end])
            self.produced = end

    def valid_produced(self) -> int:
        """Distinct valid orders in the topic so far: the most a consumer can have stored."""
        return len({k for k in self._stream.keys[: self.produced] if k in self._valid})


@contextmanager
def orders_table_locked(db_settings: Settings) -> Iterator[Conn]:
    """Hold an EXCLUSIVE lock on `orders` for the block: reads go on, every write of a batch
    waits inside its transaction. Rolled back (nothing written) on leaving."""
    with psycopg.connect(db_settings.postgres_conninfo) as conn:
        conn.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            conn.rollback()


def writers_waiting_for_the_lock(db: Conn) -> int:
    """Clients of this database waiting on a lock (autovacuum's ANALYZE of `orders` waits on
    the EXCLUSIVE lock too, but is no client)."""
    return scalar(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND wait_event_type = 'Lock'"
        " AND pid <> pg_backend_pid()",
    )


@dataclass
class Kills:
    """What the kills hit, as observed at each one."""

    held_mid_write: int = 0
    frozen_with_work_left: int = 0
    frozen_idle: int = 0
    not_stored_at_last_kill: int = 0


def kill_mid_stream(env: dict[str, str], settings: Settings, db: Conn, stream: Stream) -> Kills:
    """SIGKILL the consumer CRASH_KILLS times while only part of the stream is in the topic.
    Even kills are held mid-write: the test locks `orders`, gives the consumer a new slice and
    kills it once PostgreSQL shows its batch waiting on the lock. Odd kills freeze it (SIGSTOP)
    once a random number of orders is stored, wherever it is then, and kill it frozen."""
    rng = random.Random(71)
    stages = Stages(settings.kafka_brokers, env["KAFKA_TOPIC"], stream)
    uids = uids_of(stream.valid)
    slice_size = len(stream.values) // (CRASH_KILLS + 2)
    kills = Kills()
    for kill in range(CRASH_KILLS):
        stages.produce_until((kill + 1) * slice_size)
        stored_before = stored_count(db, uids)
        threshold = rng.randint(stored_before + 1, stages.valid_produced())
        with service_process(env, "consume") as process:
            # A restart waits for the group to drop the killed member (its session timeout).
            wait_for(lambda: stored_count(db, uids) >= threshold, 120, f"{threshold} stored")  # noqa: B023
            if kill % 2 == 0:
                with orders_table_locked(settings):
                    stages.produce_until(stages.produced + slice_size // 4)
                    wait_for(lambda: writers_waiting_for_the_lock(db) > 0, 60, "a batch held")
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                kills.held_mid_write += 1
            else:
                process.send_signal(signal.SIGSTOP)
                if stored_count(db, uids) < stages.valid_produced():
                    kills.frozen_with_work_left += 1
                else:
                    kills.frozen_idle += 1
                process.send_signal(signal.SIGKILL)
                process.wait()
        stored = stored_count(db, uids)
        assert stored < len(uids), "the topic never held the whole stream before this point"
        kills.not_stored_at_last_kill = len(uids) - stored
    stages.produce_until(len(stream.values))
    return kills


@pytest.mark.slow
def test_sigkill_mid_stream_and_mid_write_stores_every_valid_order_once_and_dead_letters_the_rest(
    service_env: dict[str, str], settings: Settings, db: Conn
) -> None:
    stream = mixed_stream(random.Random(70))
    env = {**service_env, "INGEST_BATCH_SIZE": "500"}
    ensure_topics(load_settings(env))
    kills = kill_mid_stream(env, settings, db, stream)
    uids = uids_of(stream.valid)
    dlq = env["KAFKA_DLQ_TOPIC"]
    with service_process(env, "consume"):
        wait_for(lambda: stored_count(db, uids) == len(uids), 180, "every valid order stored")
        letters = DeadLetters(settings.kafka_brokers, dlq)
        wait_for(lambda: letters.cover(stream.invalid), 60, "every invalid one in the DLQ")
    assert_stored_exactly(db, stream.valid)
    first_copies = {o.order_uid: o for o in stream.valid}
    overwritten = sum(
        stored_body(db, copy.order_uid) != encode_order(first_copies[copy.order_uid])
        for copy in stream.duplicates
    )
    assert overwritten == 0, "a later copy overwrote"
    assert stored_count(db, [f"broken-{i}" for i in range(CRASH_INVALID)]) == 0
    dead_values = letters.values
    assert set(dead_values) == set(stream.invalid), "the DLQ holds exactly the invalid ones"
    stored = stored_count(db, uids)
    report(
        "sigkill",
        messages=len(stream.values),
        valid=len(stream.valid),
        duplicates=len(stream.duplicates),
        invalid=len(stream.invalid),
        kills=CRASH_KILLS,
        held_mid_write=kills.held_mid_write,
        frozen_with_work_left=kills.frozen_with_work_left,
        frozen_idle=kills.frozen_idle,
        not_stored_at_last_kill=kills.not_stored_at_last_kill,
        stored=stored,
        overwritten=overwritten,
        dead_letters=len(set(dead_values)),
        dead_letters_redelivered=len(dead_values) - len(set(dead_values)),
        lost=len(uids) - stored + len(set(stream.invalid) - set(dead_values)),
    )


# --- PostgreSQL and Kafka outages --------------------------------------------------------


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
            wait_for(lambda: stored_now(settings, uids) > 500, what="ingest under way")
            stored_at_stop = stored_now(settings, uids)
            began = time.monotonic()
            with outage(settings, "postgres.sh", "stop", "start") as down_at:
                time.sleep(11)
                up_at = time.monotonic()
                sent_during_outage = producer.sent
            recovered_at = time.monotonic()
            wait_for(lambda: stored_now(settings, uids) == len(streamed), 120, "all stored")
            wait_for(lambda: answered_404(miss_load, recovered_at) >= 10, 60, "misses 404 again")
        assert service.poll() is None, "the service died"
    with psycopg.connect(settings.postgres_conninfo, autocommit=True) as db:
        assert_stored_exactly(db, first + streamed)
    dead_lettered = topic_size(settings.kafka_brokers, env["KAFKA_DLQ_TOPIC"])
    assert dead_lettered == 0
    during_hits = hit_load.outcomes(down_at + 1, up_at)
    during_misses = miss_load.outcomes(down_at + 1, up_at)
    assert during_hits
    assert during_misses
    assert statuses(during_hits) == {200: len(during_hits)}
    assert statuses(during_misses) == {503: len(during_misses)}
    assert statuses(hit_load.outcomes()) == {200: hit_load.count()}, "a hit failed"
    # Once a miss is 404 again (the pool has reconnected), every later one is.
    after = miss_load.outcomes(recovered_at)
    first_404 = next(i for i, outcome in enumerate(after) if outcome.status == 404)
    assert statuses(after[first_404:]) == {404: len(after) - first_404}
    unanswered = statuses(hit_load.outcomes() + miss_load.outcomes())[None]
    assert unanswered == 0, "a request got no answer"
    report(
        "postgres_outage",
        stopped_s=round(up_at - down_at, 1),
        unavailable_s=round(recovered_at - began, 1),
        orders=len(first) + len(streamed),
        in_flight=sent_during_outage - stored_at_stop,
        lost=len(streamed) - stored_now(settings, uids),
        dead_lettered=dead_lettered,
        hits_200_during=statuses(during_hits)[200],
        misses_503_during=statuses(during_misses)[503],
        misses_503_after_restart=first_404,
        requests=hit_load.count() + miss_load.count(),
        unanswered=unanswered,
    )


@pytest.mark.slow
def test_postgresql_that_stops_answering_fails_misses_with_503_and_hits_go_on(
    service_env: dict[str, str], settings: Settings
) -> None:
    """PostgreSQL reached through a forwarder that is then frozen: connections stay open and
    nothing comes back, the case a stopped server or a refused connection does not cover."""
    orders = random_orders(3, seed=82)
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
    report(
        "postgres_hangs",
        misses_503=sum(miss.status_code == 503 for miss in misses),
        seconds_for_both=round(waited, 1),
        hits_200=int(hit.status_code == 200),
        readyz=ready.status_code,
    )


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
    hit_statuses, miss_statuses = statuses(hit_load.outcomes()), statuses(miss_load.outcomes())
    failed = hit_load.count() - hit_statuses[200] + miss_load.count() - miss_statuses[404]
    assert hit_statuses == {200: hit_load.count()}
    assert miss_statuses == {404: miss_load.count()}
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
        failed_requests=failed,
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


def first_try_200s(load: HttpLoad, since: float) -> int:
    return sum(o.status == 200 and o.attempts == 1 for o in load.outcomes(since))


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
            wait_for(lambda: load.count() >= 200, 30, "load under way")
            # granian frozen: no replacement until the test has seen the other worker answer
            # alone, however quickly a respawn would come.
            os.kill(granian, signal.SIGSTOP)
            try:
                killed_at = time.monotonic()
                os.kill(workers[0], signal.SIGKILL)
                wait_for(lambda: first_try_200s(load, killed_at) >= 100, 30, "one worker answering")
            finally:
                os.kill(granian, signal.SIGCONT)
            wait_for(lambda: len(set(children(granian)) - set(workers)) == 1, 30, "respawn")
            replaced_at = time.monotonic()
            wait_for(lambda: len(load.outcomes(replaced_at)) >= 200, 30, "load after respawn")
        store(settings, late)
        for order in late:  # a miss fills the shared cache, the next request hits it
            for _ in range(2):
                assert httpx.get(f"{url}/order/{order.order_uid}").content == encode_order(order)
    outcomes = load.outcomes()
    while_one_worker = load.outcomes(killed_at, replaced_at)
    retried = [o for o in outcomes if o.attempts > 1]
    not_200 = len(outcomes) - statuses(outcomes)[200]
    assert not_200 == 0, f"{not_200} requests not answered 200: {statuses(outcomes)}"
    report(
        "worker_sigkill",
        requests=len(outcomes),
        answered_while_one_worker=len(while_one_worker),
        reset_and_retried=len(retried),
        lost=not_200,
    )


# --- SIGTERM under load ------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_under_ingest_and_http_load_completes_in_flight_work_and_loses_nothing(
    service_env: dict[str, str], settings: Settings, db: Conn
) -> None:
    """The signal reaches the consumer with a batch held inside its transaction and the API
    with misses held in PostgreSQL: both finish them and exit 0. The HTTP load stops before
    the signal: a request that reaches an idle keep-alive connection as the server closes it
    is refused by HTTP/1.1's design (a client resends a GET), so every request counted here
    is one the server has read."""
    env = {**service_env, "INGEST_BATCH_SIZE": "200", "HTTP_WORKERS": "1"}
    url, host, port = service_url(env), env.get("HTTP_HOST", "127.0.0.1"), int(env["HTTP_PORT"])
    cached, stored, held, streamed = (
        random_orders(n, seed=s) for n, s in ((100, 79), (2_000, 80), (3, 82), (20_000, 81))
    )
    store(settings, cached)
    ensure_topics(load_settings(env))
    with service_process(env, "serve") as api:
        wait_until_ready(url)  # the cache region exists now: the consumer fills it
        store(settings, stored + held)
        load = HttpLoad(url, HitOrFill(uids_of(cached), uids_of(stored)), threads=4)
        with service_process(env, "consume") as consumer, load:
            wait_for(lambda: load.count() >= 100, 30, "HTTP load under way")
            first, rest = streamed[:5_000], streamed[5_000:]
            produce(settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(first), uids_of(first))
            wait_for(lambda: stored_count(db, uids_of(streamed)) > 1_000, what="ingest under way")
            # The rest arrives only once the lock is taken, so there is a batch to hold.
            with orders_table_locked(settings) as lock:
                produce(settings.kafka_brokers, env["KAFKA_TOPIC"], values_of(rest), uids_of(rest))
                wait_for(lambda: writers_waiting_for_the_lock(db) > 0, 60, "a batch held")
                load.stop()
                idle = IdleConnection(host, port, f"/order/{cached[0].order_uid}")
                lock.execute("LOCK TABLE order_documents IN ACCESS EXCLUSIVE MODE")  # misses wait
                misses = HeldGets(host, port, [f"/order/{uid}" for uid in uids_of(held)])
                held_at = time.monotonic()
                wait_for(
                    lambda: (
                        unread_request_bytes(port) == 0 and writers_waiting_for_the_lock(db) > 1
                    ),
                    30,
                    "the misses read by the API and waiting in PostgreSQL",
                    every=0.01,
                )
                stored_at_signal = stored_count(db, uids_of(streamed))
                sigterm_at = time.monotonic()
                consumer.send_signal(signal.SIGTERM)
                api.send_signal(signal.SIGTERM)
                assert idle.closed_by_server(30), "the API began no graceful shutdown"
                assert misses.answered() == 0, "a miss was answered while its read was held"
                released_at = time.monotonic()
            answers = misses.answers()
            assert api.wait(60) == 0
            assert consumer.wait(60) == 0
            stopped_at = time.monotonic()
    assert answers == [(200, stored_body(db, uid)) for uid in uids_of(held)]
    stored_at_stop = stored_count(db, uids_of(streamed))
    assert stored_at_stop > stored_at_signal, "the held batch was not finished"
    before = load.outcomes()
    assert max(o.ended for o in before) < sigterm_at
    assert statuses(before) == {200: len(before)}, "a request before the signal failed"
    with service_process(env, "consume"):
        wait_for(lambda: stored_count(db, uids_of(streamed)) == len(streamed), what="rest stored")
    assert_stored_exactly(db, streamed)
    report(
        "sigterm",
        orders=len(streamed),
        stored_at_signal=stored_at_signal,
        finished_after_signal=stored_at_stop - stored_at_signal,
        not_yet_consumed=len(streamed) - stored_at_stop,
        misses_held_over_the_signal=len(answers),
        misses_held_s=round(released_at - held_at, 2),
        requests_answered_before=len(before),
        stop_s=round(stopped_at - sigterm_at, 1),
        lost=len(streamed) - stored_count(db, uids_of(streamed)),
    )
