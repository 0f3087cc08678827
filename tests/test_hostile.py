"""Hostile input against the real service: fuzzed messages through the real decoder, writer and
consumer; schemathesis against the published OpenAPI schema; malicious order ids on the wire;
and a flood of idle and slow connections. Counts are printed as `RELIABILITY` lines (-s)."""

import contextlib
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from service.config import Settings, load_settings
from service.errors import StoreRejected
from service.ingest.kafka import ensure_topics
from service.model import Rejection, decode_order, encode_order
from service.produce import random_order
from service.store.writer import OrderWriter
from tests.fix_db import Conn, stored_count
from tests.fix_kafka import headers, produce, read_all, topic_size
from tests.fix_processes import service_process, wait_for
from tests.orders import reference_dict

pytestmark = pytest.mark.integration

KINDS = {"malformed_json", "invalid_order", "too_large", "nul_character", "db_rejected"}

# --- fuzzed messages ---------------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key or index path inside a JSON value."""
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


_DELETE = object()


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    if value is _DELETE and isinstance(document, dict):
        del document[path[-1]]
    else:
        document[path[-1]] = None if value is _DELETE else value


@st.composite
def mutated_orders(draw: st.DrawFn) -> bytes:
    """The reference order with 0-3 fields replaced by random JSON, deleted, or made long,
    then possibly cut short or with bytes flipped."""
    order = reference_dict(order_uid=draw(st.from_regex(r"fz[A-Za-z0-9_-]{8,30}", fullmatch=True)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(sorted(_paths(order), key=repr)))
        value = draw(
            _json_values
            | st.just(_DELETE)
            | st.text(min_size=60, max_size=300)
            | st.integers(min_value=2**31 - 2, max_value=2**63 + 2)
        )
        _set(order, path, value)
    raw = json.dumps(order, ensure_ascii=draw(st.booleans())).encode()
    match draw(st.sampled_from(["whole", "cut", "flip"])):
        case "cut":
            return raw[: draw(st.integers(0, len(raw)))]
        case "flip":
            at = draw(st.integers(0, len(raw) - 1))
            return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw


# A string seed: hypothesis favours small integers, and an integer seed another test passes to
# random_orders would store that test's order_uids first (the run's tables are shared).
valid_orders = st.integers(0, 2**32).map(
    lambda seed: encode_order(random_order(random.Random(f"hostile-{seed}")))
)

hostile_messages = st.one_of(
    valid_orders,
    st.binary(max_size=2_000),
    st.text(max_size=500).map(str.encode),
    mutated_orders(),
    mutated_orders(),
    st.just(b"x" * (256 * 1024 + 1)),
)


@settings(
    max_examples=1_000,
    deadline=5_000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=hostile_messages)
@example(raw=b'{"order_uid": "\x80"}')  # invalid UTF-8 in a string: once a consumer crash
@example(raw=b'{"ord\xc3\x28er_uid": 1}')
def test_a_hostile_message_is_either_stored_or_refused_with_a_reason(
    raw: bytes, writer: OrderWriter, db: Conn
) -> None:
    result = decode_order(raw)
    kept = decode_order(raw, "keep")
    if not isinstance(result, Rejection):
        # Without unknown fields the policy changes nothing.
        assert kept == result
    for decoded in (result, kept):
        if isinstance(decoded, Rejection):
            assert decoded.kind in KINDS
            assert decoded.reason
            continue
        _, rejected = writer.write_isolating([(decoded, raw)])
        for _, exc in rejected:
            assert isinstance(exc, StoreRejected)
            assert str(exc)
        if not rejected:
            assert stored_count(db, [decoded[0].order_uid]) == 1


@pytest.fixture(scope="module")
def fuzz_topic(base_env: dict[str, str], settings: Settings) -> Iterator[dict[str, str]]:
    """One consumer process for the whole fuzz run, on a topic of its own."""
    topic = f"fuzz-{uuid.uuid4().hex[:12]}"
    env = {
        **base_env,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
    }
    ensure_topics(load_settings(env))
    with service_process(env, "consume") as process:
        yield env
        assert process.poll() is None, "the consumer died on hostile input"


def _valid_uid(raw: bytes) -> str | None:
    result = decode_order(raw)
    return result[0].order_uid if isinstance(result, tuple) else None


FUZZ_TOTALS = {"messages": 0, "stored": 0, "dead_lettered": 0, "lost": 0}


@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(batch=st.lists(hostile_messages, min_size=100, max_size=150))
def test_the_real_consumer_stores_or_dead_letters_every_hostile_message(
    batch: list[bytes], fuzz_topic: dict[str, str], settings: Settings, db: Conn
) -> None:
    brokers, dlq = settings.kafka_brokers, fuzz_topic["KAFKA_DLQ_TOPIC"]
    already_dead = topic_size(brokers, dlq)
    valid = {uid for uid in map(_valid_uid, batch) if uid is not None}
    invalid = [raw for raw in batch if _valid_uid(raw) is None]
    produce(brokers, fuzz_topic["KAFKA_TOPIC"], batch)

    def accounted() -> bool:
        # PostgreSQL may still refuse an order the validation let through: a db_rejected
        # dead letter. So every invalid message adds one, and every unstored valid one too.
        dead_letters = topic_size(brokers, dlq) - already_dead
        unstored = len(valid) - stored_count(db, sorted(valid))
        return dead_letters >= len(invalid) + unstored

    wait_for(accounted, 60, "every message stored or dead-lettered")
    dead = read_all(brokers, dlq, topic_size(brokers, dlq))
    by_value = {message.value(): headers(message) for message in dead}
    for raw in invalid:
        if raw in by_value:
            assert by_value[raw]["error.kind"] in KINDS
            assert by_value[raw]["error.message"]
    refused = {
        uid
        for raw, meta in by_value.items()
        if meta["error.kind"] == "db_rejected" and (uid := _valid_uid(raw or b"")) in valid
    }
    stored = stored_count(db, sorted(valid))
    lost = len(valid) - stored - len(refused) + sum(raw not in by_value for raw in invalid)
    FUZZ_TOTALS["messages"] += len(batch)
    FUZZ_TOTALS["stored"] += stored
    FUZZ_TOTALS["dead_lettered"] += len(invalid) + len(refused)
    FUZZ_TOTALS["lost"] += lost
    print(f"\nRELIABILITY fuzz_consumer: {' '.join(f'{k}={v}' for k, v in FUZZ_TOTALS.items())}")
    assert lost == 0


# --- hostile HTTP --------------------------------------------------------------------------


def test_no_request_generated_from_the_schema_gets_a_server_error(api_url: str) -> None:
    """Every operation in /schema, with valid and invalid inputs. PostgreSQL is up, so not even
    the documented 503 may appear. (Schemathesis' pytest plugin cannot load a schema from a
    fixture under pytest 9, so the operations are driven through their strategies here.)"""
    schema = schemathesis.openapi.from_url(f"{api_url}/schema/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), (
            f"/schema has an operation schemathesis cannot read: {result}"
        )
        operations.append(result.ok())
    calls: list[int] = []
    for operation in operations:
        # Invalid inputs exist only where the schema constrains one: the query parameters.
        # (order_uid is any string in the schema, so positive mode already sends anything.)
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * (len(operation.query) > 0)
        for mode in modes:

            @settings(max_examples=100, deadline=None, database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def no_server_error(case: schemathesis.Case[Any]) -> None:
                response = case.call(base_url=api_url)
                calls.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])

            no_server_error()
    server_errors = sum(status >= 500 for status in calls)
    print(
        f"\nRELIABILITY schemathesis: operations={len(operations)} requests={len(calls)} "
        f"5xx={server_errors}"
    )
    assert server_errors == 0


def raw_request(port: int, target: bytes, timeout: float = 10.0) -> int:
    """Send `GET <target>` byte for byte (no client-side normalisation); return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


HOSTILE_IDS = {
    "10 KB": b"/order/" + b"a" * 10_240,
    "10 KB of multibyte UTF-8": b"/order/" + "\u00e9".encode() * 5_120,
    "raw unicode": "/order/\u0437\u0430\u043a\u0430\u0437-\U0001f600".encode(),
    "percent-encoded unicode": b"/order/%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7",
    "dot segments": b"/order/../../etc/passwd",
    "encoded traversal": b"/order/..%2F..%2Fetc%2Fpasswd",
    "double-encoded traversal": b"/order/%252e%252e%252fetc%252fpasswd",
    "encoded dots": b"/order/%2e%2e",
    "backslashes": b"/order/..%5C..%5Cwindows%5Cwin.ini",
    "sql quote": b"/order/1%27%20OR%20%271%27=%271",
    "sql comment": b"/order/x%27;DROP%20TABLE%20orders;--",
    "sql union": b"/order/x%20UNION%20SELECT%20*%20FROM%20orders",
    "nul": b"/order/abc%00def",
    "crlf": b"/order/abc%0D%0ASet-Cookie:x=1",
    "empty": b"/order/",
    "like wildcard": b"/order/%25",
    "format string": b"/order/%25s%25s%25n",
}


@pytest.mark.parametrize("target", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_a_hostile_order_id_is_400_or_404(api_url: str, target: bytes) -> None:
    assert raw_request(int(api_url.rsplit(":", 1)[1]), target) in {400, 404}


def test_hostile_ids_leave_the_orders_table_alone(api_url: str, db: Conn) -> None:
    port = int(api_url.rsplit(":", 1)[1])
    before = db.execute("SELECT order_uid, xmin::text FROM orders ORDER BY order_uid").fetchall()
    for target in HOSTILE_IDS.values():
        raw_request(port, target)
    after = db.execute("SELECT order_uid, xmin::text FROM orders ORDER BY order_uid").fetchall()
    assert after == before, "a hostile id changed the orders table"


# --- slow and idle connections -----------------------------------------------------------

IDLE_CONNECTIONS = 1_000
SLOW_CONNECTIONS = 500
FLOOD_SECONDS = 15.0
# Normal requests for this long after the first flood connection opened: below the server's
# 5 s header timeout, so the flood is still open while they run.
NORMAL_SECONDS = 4.0


class Flood:
    """Loopback connections that send nothing (idle) or one header byte a second (slowloris),
    for at most `seconds`; every socket is closed on leaving the block."""

    def __init__(self, port: int, idle: int, slow: int, seconds: float) -> None:
        self._port = port
        self._seconds = seconds
        self.opened_at = time.monotonic()
        self._idle = [self._connect() for _ in range(idle)]
        self._slow = [self._connect() for _ in range(slow)]
        for sock in self._slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self.closed_by_server = 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        sock.setblocking(False)
        return sock

    def __enter__(self) -> "Flood":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(self._seconds + 5)
        for sock in self._idle + self._slow:
            sock.close()

    def _drip(self) -> None:
        deadline = time.monotonic() + self._seconds
        while not self._stop.wait(1.0) and time.monotonic() < deadline:
            for sock in self._slow:
                with contextlib.suppress(OSError):
                    sock.send(b"X")

    def server_closed(self) -> int:
        """How many flood connections the server has closed (EOF or reset) so far."""
        closed = 0
        for sock in self._idle + self._slow:
            try:
                if sock.recv(4096) == b"":
                    closed += 1
            except BlockingIOError:
                continue
            except OSError:
                closed += 1
        return closed


def test_a_flood_of_idle_and_slow_connections_does_not_stop_normal_requests(
    api_url: str,
) -> None:
    port = int(api_url.rsplit(":", 1)[1])
    total = IDLE_CONNECTIONS + SLOW_CONNECTIONS
    latencies: list[float] = []
    failed = 0
    with Flood(port, IDLE_CONNECTIONS, SLOW_CONNECTIONS, FLOOD_SECONDS) as flood:
        started = time.monotonic()
        with httpx.Client(base_url=api_url, timeout=10) as client:
            while time.monotonic() < flood.opened_at + NORMAL_SECONDS:
                began = time.monotonic()
                health = client.get("/healthz").status_code
                miss = client.get(f"/order/{uuid.uuid4().hex}").status_code
                failed += (health, miss) != (200, 404)
                latencies.append(time.monotonic() - began)
        open_after_normal = total - flood.server_closed()
        wait_for(lambda: flood.server_closed() == total, FLOOD_SECONDS, "flood shed")
        shed_after = time.monotonic() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"\nRELIABILITY flood: idle={IDLE_CONNECTIONS} slow={SLOW_CONNECTIONS} "
        f"request_pairs={len(latencies)} p99_ms={p99 * 1000:.1f} max_ms={latencies[-1] * 1000:.1f} "
        f"open_after_normal_requests={open_after_normal} "
        f"all_closed_by_server_after_s={shed_after:.1f} failed={failed}"
    )
    assert failed == 0, f"{failed} of {len(latencies)} request pairs failed during the flood"
