"""A plain ASGI app served through `service.api.bridge` under a real granian, for
test_bridge.py: lifespan, request bodies, streamed responses, disconnects and failures, each
leaving a line in the file named by BRIDGE_EVENTS where the test needs to see it."""

import asyncio
import os
from pathlib import Path
from typing import Any

from service.api.bridge import Message, Receive, RsgiToAsgi, Scope, Send

EVENTS = Path(os.environ["BRIDGE_EVENTS"])


def note(event: str) -> None:
    with EVENTS.open("a") as events:
        events.write(event + "\n")


async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["opened"] = "at startup"
            note("startup")
            await send({"type": "lifespan.startup.complete"})
        else:
            note("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _start(send: Send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"x-app", b"1")]})


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    path = scope["path"]
    if path == "/echo":
        message: Message = await receive()
        await _start(send)
        head = f"{scope['method']} {scope['query_string'].decode()} ".encode()
        await send({"type": "http.response.body", "body": head + message["body"]})
    elif path == "/state":
        await _start(send)
        await send({"type": "http.response.body", "body": scope["state"]["opened"].encode()})
    elif path == "/stream":
        await _start(send)
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait-for-disconnect":
        await receive()
        note("waiting")
        if (await receive())["type"] == "http.disconnect":
            note("disconnected")
    elif path == "/boom":
        raise RuntimeError("the app failed before answering")
    else:
        await _start(send, 404)
        await send({"type": "http.response.body", "body": b"no such path"})


class App:
    """The RSGI side: every request through the bridge, every status noted."""

    def __init__(self) -> None:
        self.bridge = RsgiToAsgi(asgi_app, lambda status: note(f"status {status}"))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bridge.startup(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bridge.shutdown(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        await self.bridge(scope, protocol, "GET" if scope.method == "HEAD" else None)


app = App()
