"""Closed-loop HTTP load on loopback for the fault tests: a few threads GET paths until
stopped (or a hard time limit passes), recording each request's start, end and answer, so a
test can ask what was answered in any window (during an outage, around a kill, a SIGTERM)."""

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
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
