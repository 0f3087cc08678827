"""What each worker opens at start and closes at exit, kept on `app.state.orders`."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar

from service.cache import SharedCache
from service.config import Settings
from service.store.db import Pool, async_pool
from service.store.loader import DocumentLoader


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    cache: SharedCache
    pool: Pool
    documents: DocumentLoader
    # The primary's pool when reads go to a replica (POSTGRES_READ_URL), else None.
    primary: Pool | None = None


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Attach to the shared cache and open the database pool; close both on the way out."""
    settings: Settings = app.state.settings
    cache = SharedCache.attach(settings.cache_name)
    pool = async_pool(settings)
    # Not waiting: a worker must start and serve cache hits even while PostgreSQL is down.
    await pool.open(wait=False)
    primary = async_pool(settings, primary=True) if settings.reads_from_replica else None
    if primary is not None:
        await primary.open(wait=False)
    documents = DocumentLoader(
        pool, max_reads=settings.miss_queries, primary=primary, fill=cache.try_put_many
    )
    app.state.orders = AppState(settings, cache, pool, documents, primary)
    # Everything allocated so far (Litestar, the app, the modules) lives as long as the worker:
    # frozen, the collector's full passes stop re-scanning it. Those passes were the misses'
    # tail (measured in alternating runs of bench.http; docs/profiling-study.md).
    gc.freeze()
    try:
        yield
    finally:
        await pool.close()
        if primary is not None:
            await primary.close()
        cache.close()
