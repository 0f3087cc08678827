"""The shared-memory order cache: one copy of recent orders for every process of the service.

`SharedCache.create` (the parent) builds the region; workers and the consumer `attach`.
Reads take no lock; writers serialise on a file lock. See `shared.py` for the design.
"""

from service.cache.shared import CacheStats, SharedCache

__all__ = ["CacheStats", "SharedCache"]
