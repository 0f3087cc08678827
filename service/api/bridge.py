"""An ASGI app served through granian's RSGI protocol: the scope translated, the request body
read once, the response sent whole or streamed, a disconnect reported once the body is read,
and the ASGI lifespan run at worker start and stop.

Ours because no maintained library bridges in this direction (granian's own adapters go from
its Rust core to ASGI, not from RSGI to ASGI). It covers what Litestar uses: HTTP requests with
a body, whole and streamed responses, lifespan. Not websockets (granian runs with `--no-ws`),
trailers, or the `pathsend` extension, so Litestar streams files itself.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from service.api.problems import problem_body

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiApp(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


_ASGI = {"version": "3.0", "spec_version": "2.3"}
_SERVER_ERROR = problem_body(
    500, "Internal Server Error", "the request failed; the worker's log has the traceback"
)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def asgi_scope(scope: Any) -> Scope:
    """The ASGI HTTP scope of an RSGI one."""
    path: str = scope.path
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()],
        "client": _address(scope.client),
        "server": _address(scope.server),
        "extensions": {},
    }


class _Exchange:
    """One request's receive and send, over one RSGI protocol object."""

    def __init__(self, protocol: Any, head: bool, count: Callable[[int], None]) -> None:
        self.protocol = protocol
        self.head = head
        self.count = count
        self.body_read = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.stream: Any = None
        self.done = False

    async def receive(self) -> Message:
        if not self.body_read:
            self.body_read = True
            return {"type": "http.request", "body": await self.protocol(), "more_body": False}
        # Only an app waiting for the client to leave asks again: it learns of it when it does.
        await self.protocol.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.count(self.status)
            self.headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
            ]
        elif kind == "http.response.body" and not self.done:
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            if self.stream is None and not more:
                self.protocol.response_bytes(self.status, self.headers, body)
                self.done = True
                return
            if self.stream is None:
                self.stream = self.protocol.response_stream(self.status, self.headers)
            if body and not self.head:
                await self.stream.send_bytes(body)
            self.done = not more


class RsgiToAsgi:
    """Serves `app` through RSGI: `await bridge(scope, protocol)` answers one request, passing
    its status to `count` before the response leaves; `startup(loop)` and `shutdown(loop)` run
    the app's lifespan."""

    def __init__(self, app: AsgiApp, count: Callable[[int], None]) -> None:
        self.app = app
        self.count = count
        self._lifespan: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Message] | None = None
        self._replies: asyncio.Queue[Message] | None = None
        # The lifespan's state, a shallow copy of it in every request's scope (ASGI's
        # lifespan state extension).
        self._state: dict[str, Any] = {}

    async def __call__(self, scope: Any, protocol: Any, method: str | None = None) -> None:
        """Answer the request; `method` overrides the request's (HEAD served as GET)."""
        asgi = asgi_scope(scope)
        asgi["state"] = self._state.copy()
        if method is not None:
            asgi["method"] = method
        exchange = _Exchange(protocol, scope.method == "HEAD", self.count)
        try:
            await self.app(asgi, exchange.receive, exchange.send)
        except Exception:
            log.exception("%s %s failed", scope.method, scope.path)
            if exchange.status:
                raise
            self.count(500)
            protocol.response_bytes(
                500, [("content-type", "application/problem+json")], _SERVER_ERROR
            )

    def startup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the lifespan up to startup complete; raise if the app says it failed."""
        self._events, self._replies = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self._state}
        self._lifespan = loop.create_task(self.app(scope, self._events.get, self._replies.put))
        self._events.put_nowait({"type": "lifespan.startup"})
        self._expect(loop, "lifespan.startup.complete")

    def shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the lifespan's shutdown to its end."""
        if self._events is None or self._lifespan is None:
            return
        self._events.put_nowait({"type": "lifespan.shutdown"})
        self._expect(loop, "lifespan.shutdown.complete")
        loop.run_until_complete(self._lifespan)

    def _expect(self, loop: asyncio.AbstractEventLoop, wanted: str) -> None:
        assert self._replies is not None
        assert self._lifespan is not None
        reply = loop.run_until_complete(self._next_reply(self._replies, self._lifespan))
        if reply.get("type") != wanted:
            raise RuntimeError(f"the app's lifespan answered {reply!r}, not {wanted!r}")

    @staticmethod
    async def _next_reply(replies: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message:
        """The app's next lifespan message, or its exception if it ended without one."""
        waiting = asyncio.ensure_future(replies.get())
        await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        task.result()
        return {"type": "lifespan.ended"}
