"""Prefault: a thread maps a new region's pages into the process without changing what it
holds, and the end of its block stops it and lets the region close."""

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cache import SharedCache
from service.cache.region import region_path
from tests.helpers import wait_for

BUDGET = 64 * 1024 * 1024


@pytest.fixture
def cache() -> Iterator[SharedCache]:
    owner = SharedCache.create(f"test-prefault-{os.urandom(6).hex()}", 1000, BUDGET)
    yield owner
    owner.close()
    owner.unlink()


def _resident_bytes(path: Path) -> int:
    """This process's resident bytes of its mapping of `path`, from /proc/self/smaps."""
    in_mapping = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                in_mapping = line.rstrip("\n").endswith(" " + str(path))
            elif in_mapping and line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"{path} is not mapped")


def _kernel_has_populate_write() -> bool:
    major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    return (major, minor) >= (5, 14)


@pytest.mark.skipif(not _kernel_has_populate_write(), reason="MADV_POPULATE_WRITE: Linux 5.14")
def test_the_whole_region_is_mapped_in_without_a_write_and_its_entries_stay(
    cache: SharedCache,
) -> None:
    path = region_path(cache.name)
    size = path.stat().st_size
    cache.put("kept", b"value")
    assert _resident_bytes(path) < size // 2
    with cache.prefaulting():
        wait_for(lambda: _resident_bytes(path) >= size - 4096, 30, "the region mapped in")
    assert cache.get("kept") == b"value"
    assert cache.put("after", b"more")
    assert cache.get("after") == b"more"


def test_leaving_the_block_at_once_stops_the_thread_and_lets_the_region_close(
    cache: SharedCache,
) -> None:
    with cache.prefaulting():
        pass
    assert not [t for t in threading.enumerate() if t.name == "cache-prefault"]
    # The thread's hold on the mapping is gone: close() would raise BufferError otherwise
    # (the fixture closes it).
