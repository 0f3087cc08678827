"""Cache warm-up: the newest stored orders (up to capacity) into the shared cache at start."""

import logging
import time

from service.cache import SharedCache
from service.config import Settings
from service.model import encode_order
from service.store.db import connect
from service.store.reader import newest_orders

log = logging.getLogger(__name__)


def warm_cache(settings: Settings, cache: SharedCache) -> int:
    """Fill the cache from PostgreSQL, mark it ready, and return how many orders were loaded."""
    started = time.perf_counter()
    loaded = 0
    with connect(settings) as conn:
        for orders in newest_orders(conn, settings.cache_size):
            loaded += cache.put_many((o.order_uid, encode_order(o)) for o in orders)
    cache.mark_ready()
    log.info("warm-up loaded %d orders in %.2f s", loaded, time.perf_counter() - started)
    return loaded
