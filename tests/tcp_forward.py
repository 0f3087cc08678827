"""A tiny TCP forwarder, `python -m tests.tcp_forward LISTEN=TARGET ...`, for the two-host test
and the hung-database test.

Each argument is `host:port=host:port`; a listening port of 0 picks a free one. Once every
listener is bound it prints their addresses, one JSON list on one line, so the caller knows the
ports and that it is ready. Runs until killed. Used inside a network namespace (its loopback
to the host side of a veth) and on the host (the veth address to the host's loopback), so
PostgreSQL and Kafka, both bound to loopback, are reachable from the namespace unchanged.
Stopped with SIGSTOP, it is a PostgreSQL that accepts connections and never answers.
"""

import asyncio
import json
import select
import subprocess
import sys
from functools import partial

CHUNK = 1 << 16
# This module run as a process; append LISTEN=TARGET routes.
FORWARDER = [sys.executable, "-m", "tests.tcp_forward"]


def ready_addresses(process: "subprocess.Popen[str]", seconds: float = 15.0) -> list[str]:
    """The bound addresses a forwarder started with stdout=PIPE prints once it listens."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], seconds)
    line = process.stdout.readline() if readable else ""
    if not line:
        raise RuntimeError(f"forwarder {process.args!r} did not start (exit {process.poll()})")
    addresses: list[str] = json.loads(line)
    return addresses


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy reader to writer until the reader ends, then close the writer."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _forward(
    target: tuple[str, int], client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
) -> None:
    try:
        server_reader, server = await asyncio.open_connection(*target)
    except OSError:
        client.close()
        return
    await asyncio.gather(pipe(client_reader, server), pipe(server_reader, client))


async def _main(routes: list[tuple[tuple[str, int], tuple[str, int]]]) -> None:
    servers = [
        await asyncio.start_server(partial(_forward, target), *listen, reuse_address=True)
        for listen, target in routes
    ]
    bound = [server.sockets[0].getsockname()[:2] for server in servers]
    print(json.dumps([f"{host}:{port}" for host, port in bound]), flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    pairs = [argument.split("=", 1) for argument in sys.argv[1:]]
    asyncio.run(_main([(_address(listen), _address(target)) for listen, target in pairs]))
