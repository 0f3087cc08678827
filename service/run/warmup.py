"""Cache warm-up: the newest stored orders (up to capacity) into the shared cache at start,
read where reads go (a replica with POSTGRES_READ_URL).

One thread reads the COPY and writes each chunk of orders into the cache before reading on.
While it writes a chunk (a few tenths of a millisecond), PostgreSQL goes on sending into the
socket's buffers, so the stream does not stop. Meanwhile a second thread maps the region's pages
in ahead of those writes (cache/prefault.py), outside the GIL. The design before, a reader
thread handing chunks to the writing thread, took about a fifth more CPU: both need the GIL for
nearly all their work, and they spent some of it handing the GIL back and forth
(docs/profiling-study.md, section 6.2).
"""

import logging
import time
from contextlib import closing

from service.cache import SharedCache
from service.config import Settings
from service.store.db import connect_for_reads
from service.store.reader import newest_documents

log = logging.getLogger(__name__)

# Orders per chunk: about 150 KB, which stays in the CPU cache from parse to write.
CHUNK = 128


def warm_cache(settings: Settings, cache: SharedCache) -> int:
    """Fill the cache from PostgreSQL, mark it ready, and return how many orders were loaded."""
    started = time.perf_counter()
    loaded = 0
    # Closed here, not at garbage collection, when a write fails: the COPY is abandoned while
    # its connection is still open.
    with (
        cache.prefaulting(),
        connect_for_reads(settings) as conn,
        closing(newest_documents(conn, settings.cache_size, CHUNK)) as chunks,
    ):
        for chunk in chunks:
            loaded += cache.put_encoded(chunk)
    cache.mark_ready()
    log.info("warm-up loaded %d orders in %.2f s", loaded, time.perf_counter() - started)
    return loaded
