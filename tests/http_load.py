"""Closed-loop HTTP load on loopback for the fault tests: a few threads GET paths until
stopped (or a hard time limit passes), recording each request's start, end and answer, so a
test can ask what was answered in any window (during an outage, around a kill, a SIGTERM);
and requests a test holds inside the server, to see what a graceful shutdown does to them."""

import http.client
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import httpx

PathChooser = Callable[[random.Random], str]

HARD_LIMIT_S = 180.0


@dataclass(frozen=True, slots=True)
class Outcome:
    path: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no answer (connection refused, reset, timeout)
    error: str = ""
    attempts: int = 1


class HttpLoad:
    """`with HttpLoad(url, choose) as load:` runs the load for the block; `retries` resends a
    request that got no answer on a fresh connection (what a client of a GET would do)."""

    def __init__(
        self,
        base_url: str,
        choose: PathChooser,
        threads: int = 4,
        retries: int = 0,
        timeout_s: float = 30.0,
    ) -> None:
        self._base_url = base_url
        self._choose = choose
        self._retries = retries
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(seed,), daemon=True)
            for seed in range(threads)
        ]

    def __enter__(self) -> "HttpLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout_s + 5)

    def _loop(self, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + HARD_LIMIT_S
        client = httpx.Client(base_url=self._base_url, timeout=self._timeout_s)
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                outcome, client = self._request(client, self._choose(rng))
                with self._lock:
                    self._outcomes.append(outcome)
        finally:
            client.close()

    def _request(self, client: httpx.Client, path: str) -> tuple[Outcome, httpx.Client]:
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                status = client.get(path).status_code
                return Outcome(path, started, time.monotonic(), status, "", attempts), client
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
                client.close()
                client = httpx.Client(base_url=self._base_url, timeout=self._timeout_s)
                if attempts > self._retries:
                    return Outcome(path, started, time.monotonic(), None, error, attempts), client

    def outcomes(self, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        """Requests that started at or after `since` and ended by `until`."""
        with self._lock:
            return [o for o in self._outcomes if o.started >= since and o.ended <= until]

    def count(self) -> int:
        with self._lock:
            return len(self._outcomes)


def statuses(outcomes: list[Outcome], prefix: str = "") -> Counter[int | None]:
    """How many answers of each status (None: no answer) among paths starting with `prefix`."""
    return Counter(o.status for o in outcomes if o.path.startswith(prefix))


class HeldGets:
    """GETs each on a connection of its own, answered whenever the server answers: built
    once every request is written to its socket; `answers()` waits for each (status, body)."""

    def __init__(self, host: str, port: int, paths: list[str]) -> None:
        self._connections = []
        for path in paths:
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("GET", path)
            self._connections.append(connection)
        self._pool = ThreadPoolExecutor(len(paths))
        self._answers = [self._pool.submit(_answer, c) for c in self._connections]

    def answered(self) -> int:
        return sum(answer.done() for answer in self._answers)

    def answers(self) -> list[tuple[int, bytes]]:
        try:
            return [answer.result() for answer in self._answers]
        finally:
            self._pool.shutdown()
            for connection in self._connections:
                connection.close()


def _answer(connection: http.client.HTTPConnection) -> tuple[int, bytes]:
    response = connection.getresponse()
    return response.status, response.read()


class IdleConnection:
    """A keep-alive connection that got one answer and then sends nothing: a server closes it
    the moment its graceful shutdown begins (hyper closes idle HTTP/1 connections at once)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self._connection = http.client.HTTPConnection(host, port, timeout=60)
        self._connection.request("GET", path)
        assert _answer(self._connection)[0] == 200

    def closed_by_server(self, timeout_s: float) -> bool:
        sock = self._connection.sock
        assert sock is not None
        sock.settimeout(timeout_s)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return False
        finally:
            self._connection.close()


def unread_request_bytes(port: int) -> int:
    """Bytes clients sent to `port` that no server process has read yet (the receive queues
    of its established sockets, as `ss` shows them)."""
    lines = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return sum(int(line.split()[0]) for line in lines)
