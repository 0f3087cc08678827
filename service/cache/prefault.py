"""Mapping a new region's pages into this process from a second thread, just ahead of the
warm-up's writes.

A new region's memory is allocated (`build_region` fallocates the file) but not yet in this
process's page table, so the warm-up's first write to each 4 KB page traps into the kernel:
a measurable part of what the warm-up spends per order (docs/profiling-study.md, section
6.3). `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) maps a
range in one call without the traps, and ctypes releases the GIL while it runs, so a thread
doing it works on the other core beside the warm-up. It maps the slot index first (written
at random), then the log in steps, never more than LEAD bytes ahead of the log's head: the
warm-up writes the log from its start, and a region is sized with room to spare, so mapping
all of it would spend the thread's CPU, while the machine is busy starting the API workers,
on pages nobody writes yet. Where the kernel lacks it, the warm-up takes its faults as before.
"""

import ctypes
import logging
import mmap
import threading
from types import TracebackType

from service.cache.layout import HEAD_W, Views

log = logging.getLogger(__name__)

MADV_POPULATE_WRITE = 23
# Per call: long enough that the calls cost nothing, short enough to stay close to the head.
STEP = 16 * 1024 * 1024
# How far ahead of the head the log is mapped: a few hundred milliseconds of warm-up writes.
LEAD = 64 * 1024 * 1024
# How long the thread sleeps when it is LEAD ahead.
IDLE_S = 0.002

_libc = ctypes.CDLL(None, use_errno=True)
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise.restype = ctypes.c_int


class Prefault:
    """While the block runs, a thread maps the region's pages in ahead of its writer."""

    def __init__(self, views: Views) -> None:
        size = len(views.mm)
        # Holds the mapping open (mmap.close refuses while it exists) until the thread is done.
        self._view: ctypes.Array[ctypes.c_char] | None = (ctypes.c_char * size).from_buffer(
            views.mm
        )
        self._address = ctypes.addressof(self._view)
        self._hdr = views.hdr
        self._log0 = views.log0
        self._end = views.log0 + views.budget
        self._stop = threading.Event()
        # Set whenever the thread has mapped all it may for now (LEAD ahead, or everything).
        self.ahead = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-prefault", daemon=True)

    def __enter__(self) -> "Prefault":
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._view = None

    def _run(self) -> None:
        if not self._map(0, self._log0):
            return
        mapped = self._log0
        while mapped < self._end and not self._stop.is_set():
            wanted = min(self._end, self._log0 + self._hdr[HEAD_W] + LEAD)
            if wanted <= mapped:
                self.ahead.set()
                self._stop.wait(IDLE_S)
                continue
            self.ahead.clear()
            until = min(wanted, mapped + STEP)
            if not self._map(mapped, until):
                return
            mapped = until
        self.ahead.set()

    def _map(self, start: int, end: int) -> bool:
        """Map [start, end) in; False (and a debug line) if the kernel refuses."""
        start -= start % mmap.PAGESIZE
        if _madvise(self._address + start, end - start, MADV_POPULATE_WRITE) == 0:
            return True
        log.debug("no prefault of the cache region (madvise errno %d)", ctypes.get_errno())
        return False
