"""A delaying TCP relay, `python -m tests.delay_relay DELAY_MS`, for the slow-link faults
(tests/netfaults.py): nft redirects a namespace's connections to chosen peers here, and the
relay connects on to each one's original destination (SO_ORIGINAL_DST) with its own sockets
marked `MARK`, which the redirect rule lets pass. SIGUSR1 holds each chunk from the client
DELAY_MS before passing it on (as `tc netem delay` on the client's interface would), SIGUSR2
stops that; each prints `delay <ms>` once in force. Prints `["127.0.0.1:<port>"]` once it
listens; runs until killed.
"""

import asyncio
import json
import signal
import socket
import struct
import sys
import time

from tests.tcp_forward import pipe

CHUNK = 1 << 16
MARK = 0x4F
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
RELAY = [sys.executable, "-m", "tests.delay_relay", "200"]


class Delay:
    seconds = 0.0


def _original_destination(client: socket.socket) -> tuple[str, int]:
    raw = client.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, address = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(address), port


async def _delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy reader to writer, each chunk leaving Delay.seconds after it came, in order."""
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while (item := await due.get())[1]:
            wait = item[0] - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(item[1])
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(CHUNK):
            due.put_nowait((time.monotonic() + Delay.seconds, data))
        due.put_nowait((0.0, b""))
        await sender
    except ConnectionError:
        sender.cancel()
    finally:
        writer.close()


async def _relay(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
    destination = _original_destination(client.get_extra_info("socket"))
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    upstream.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(upstream, destination)
    except OSError:
        upstream.close()
        client.close()
        return
    server_reader, server = await asyncio.open_connection(sock=upstream)
    await asyncio.gather(_delayed(client_reader, server), pipe(server_reader, client))


def _set_delay(seconds: float) -> None:
    Delay.seconds = seconds
    print(f"delay {round(seconds * 1000)}", flush=True)


async def _main(delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, _set_delay, delay_s)
    loop.add_signal_handler(signal.SIGUSR2, _set_delay, 0.0)
    server = await asyncio.start_server(_relay, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    print(json.dumps([f"{host}:{port}"]), flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) / 1000))
