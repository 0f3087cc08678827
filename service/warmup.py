"""Cache warm-up: the newest stored orders (up to capacity) into the shared cache at start."""

import logging
import time

from service.cache import SharedCache
from service.config import Settings
from service.store.db import connect
from service.store.reader import newest_documents

log = logging.getLogger(__name__)


def warm_cache(settings: Settings, cache: SharedCache) -> int:
    """Fill the cache from PostgreSQL, mark it ready, and return how many orders were loaded."""
    started = time.perf_counter()
    loaded = 0
    with connect(settings) as conn:
        for documents in newest_documents(conn, settings.cache_size):
            loaded += cache.put_many(documents)
    cache.mark_ready()
    log.info("warm-up loaded %d orders in %.2f s", loaded, time.perf_counter() - started)
    return loaded
