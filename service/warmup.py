"""Cache warm-up: the newest stored orders (up to capacity) into the shared cache at start.

Reading and writing overlap: a thread reads the COPY from PostgreSQL while the caller's thread
writes the cache. In one thread they took turns: while a chunk was written to the cache nobody
read the socket, so PostgreSQL stopped as soon as the socket buffer was full, and sat idle
for the whole write. psycopg waits for the socket without the GIL, so the reader keeps the
stream flowing while the writer runs.
"""

import logging
import queue
import threading
import time
from contextlib import closing, suppress

from service.cache import SharedCache
from service.config import Settings
from service.store.copy_pairs import Pair
from service.store.db import connect
from service.store.reader import newest_documents

log = logging.getLogger(__name__)

# Orders per hand-off, and hand-offs the reader may run ahead: at most about 10 MB buffered.
CHUNK = 2_000
READ_AHEAD = 4

Chunk = list[Pair] | Exception | None


def warm_cache(settings: Settings, cache: SharedCache) -> int:
    """Fill the cache from PostgreSQL, mark it ready, and return how many orders were loaded."""
    started = time.perf_counter()
    chunks: queue.Queue[Chunk] = queue.Queue(READ_AHEAD)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read, args=(settings, chunks, stop), name="warm-up reader", daemon=True
    )
    reader.start()
    loaded = 0
    try:
        while (chunk := chunks.get()) is not None:
            if isinstance(chunk, Exception):
                raise chunk
            loaded += cache.put_encoded(chunk)
    finally:
        stop.set()
        # Frees a reader blocked on a full queue; once `stop` is set it puts at most once more.
        while reader.is_alive():
            with suppress(queue.Empty):
                chunks.get(timeout=0.1)
    cache.mark_ready()
    log.info("warm-up loaded %d orders in %.2f s", loaded, time.perf_counter() - started)
    return loaded


def _read(settings: Settings, chunks: "queue.Queue[Chunk]", stop: threading.Event) -> None:
    try:
        # Closed here, not at garbage collection, when the writer gave up: the COPY is
        # abandoned while its connection is still open.
        with (
            connect(settings) as conn,
            closing(newest_documents(conn, settings.cache_size, CHUNK)) as all_documents,
        ):
            for documents in all_documents:
                if stop.is_set():
                    return
                chunks.put(documents)
        chunks.put(None)
    except Exception as exc:  # raised again by the writing thread
        if not stop.is_set():
            chunks.put(exc)
