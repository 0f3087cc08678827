"""The e2e benchmark's instrument: GET status codes over a few keep-alive HTTP/1.1 connections,
written straight onto asyncio streams.

The benchmark polls each sampled order until it answers 200, up to a thousand GETs a second
from the process that also produces. A general client (httpx: about half a millisecond of
Python per request) made the poller's own queue the tail of what it measured: at 5,000
orders/s the orders reached the cache with p99 83 ms and were seen with p99 270 ms. This one
does a write, a read of the head and a read of the body per GET.
"""

import asyncio

_ERROR = 0

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Poller:
    """GETs to one HTTP/1.1 server over at most `connections` connections, reused."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self._host = host
        self._port = port
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []
        self._request_head = f" HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def status(self, path: str) -> int:
        """The status code of `GET path`, or 0 if the connection failed or the answer was
        not HTTP/1.1 with a content-length."""
        async with self._slots:
            idle = self._idle_connection()
            if idle is not None:
                status = await self._get(idle, path)
                if status != _ERROR:
                    return status
                # The server closes a keep-alive connection it finds idle (granian: after its
                # header read timeout), possibly just as it is reused: once more, on a new one.
            try:
                fresh = await asyncio.open_connection(self._host, self._port)
            except OSError:
                return _ERROR
            return await self._get(fresh, path)

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def _get(self, connection: _Connection, path: str) -> int:
        reader, writer = connection
        try:
            writer.write(b"GET " + path.encode() + self._request_head)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            await reader.readexactly(_content_length(head))
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return _ERROR
        self._idle.append(connection)
        return status

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in self._idle))
        self._idle.clear()


def _content_length(head: bytes) -> int:
    """The content-length of a response head; ValueError if it has none."""
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    raise ValueError("response without content-length")
