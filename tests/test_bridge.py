"""The RSGI→ASGI bridge under a real granian (tests/bridge_app.py): lifespan, bodies, streams,
disconnects and failures."""

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fix_processes import REPO, free_port


@dataclass(frozen=True, slots=True)
class Served:
    url: str
    port: int
    events: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []

    def wait_for(self, event: str, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while event not in self.lines():
            assert time.monotonic() < deadline, f"no {event!r} in {self.lines()}"
            time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    events = tmp_path / "events"
    command = [
        *(sys.executable, "-m", "granian", "--interface", "rsgi", "--no-ws"),
        *("--host", "127.0.0.1", "--port", str(port), "tests.bridge_app:app"),
    ]
    env = {"BRIDGE_EVENTS": str(events), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/ready")
                break
            except httpx.TransportError:
                assert process.poll() is None, "granian exited"
                assert time.monotonic() < deadline, "granian did not answer within 60 s"
                time.sleep(0.1)
        yield Served(url, port, events, process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)


def test_the_lifespan_starts_before_the_first_request_and_stops_after_sigterm(
    served: Served,
) -> None:
    assert served.lines()[0] == "startup"
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(60) == 0
    assert served.lines()[-1] == "shutdown"


def test_what_the_lifespan_put_in_its_state_reaches_every_request(served: Served) -> None:
    assert httpx.get(f"{served.url}/state").text == "at startup"


def test_a_request_body_and_query_reach_the_app(served: Served) -> None:
    body = bytes(range(256)) * 400
    response = httpx.post(f"{served.url}/echo?a=1&b=%20", content=body)
    assert response.status_code == 200
    assert response.headers["x-app"] == "1"
    assert response.content == b"POST a=1&b=%20 " + body


def test_a_streamed_response_arrives_whole_and_head_gets_none_of_it(served: Served) -> None:
    assert httpx.get(f"{served.url}/stream").content == b"one two three"
    head = httpx.head(f"{served.url}/stream")
    assert head.status_code == 200
    assert head.content == b""


def test_a_client_that_leaves_is_reported_as_a_disconnect(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port)) as client:
        client.sendall(b"GET /wait-for-disconnect HTTP/1.1\r\nhost: x\r\n\r\n")
        served.wait_for("waiting")
    served.wait_for("disconnected")


def test_an_app_that_fails_before_answering_gives_a_500_problem(served: Served) -> None:
    response = httpx.get(f"{served.url}/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Internal Server Error"


def test_every_status_is_passed_on_before_the_response_leaves(served: Served) -> None:
    for path, status in (("/echo", 200), ("/nowhere", 404), ("/boom", 500)):
        assert httpx.get(f"{served.url}{path}").status_code == status
        assert served.lines()[-1] == f"status {status}"
