"""Prefault: a thread maps a new region's pages into the process, the index and then the log
a bounded lead ahead of its head, without changing what the region holds; the end of its block
stops it and lets the region close."""

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cache import SharedCache
from service.cache.prefault import LEAD
from service.cache.region import region_path
from tests.fix_processes import wait_for

BUDGET = 256 * 1024 * 1024
VALUE = b"v" * (64 * 1024)
PAGE = 4096


@pytest.fixture
def cache() -> Iterator[SharedCache]:
    owner = SharedCache.create(f"test-prefault-{os.urandom(6).hex()}", 10_000, BUDGET)
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
def test_the_log_is_mapped_a_lead_ahead_of_its_head_and_the_entries_stay(
    cache: SharedCache,
) -> None:
    path = region_path(cache.name)
    log_start = path.stat().st_size - BUDGET
    cache.put("kept", b"value")
    with cache.prefaulting() as prefault:
        assert prefault.ahead.wait(30), "the thread never caught up"
        # The index and LEAD bytes of the log, not the rest of the region.
        resident = _resident_bytes(path)
        assert log_start + LEAD - PAGE <= resident <= log_start + LEAD + 2 * PAGE
        written = sum(cache.put(f"k{i}", VALUE) for i in range(1600))
        assert written == 1600
        wait_for(
            lambda: _resident_bytes(path) >= log_start + 1600 * len(VALUE) + LEAD,
            30,
            "the mapping following the head",
        )
    assert cache.get("kept") == b"value"
    assert cache.get("k1599") == VALUE


def test_leaving_the_block_at_once_stops_the_thread_and_lets_the_region_close(
    cache: SharedCache,
) -> None:
    with cache.prefaulting():
        pass
    assert not [t for t in threading.enumerate() if t.name == "cache-prefault"]
    # The thread's hold on the mapping is gone: close() would raise BufferError otherwise
    # (the fixture closes it).
