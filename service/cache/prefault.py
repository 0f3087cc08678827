"""Mapping a region's pages into this process from a second thread, ahead of the warm-up.

A new region's memory is allocated (`build_region` fallocates the file) but not yet in this
process's page table, so the warm-up's first write to each 4 KB page traps into the kernel:
about a microsecond a page, 0.45 µs of the 3 µs the warm-up spends per order
(docs/profiling-study.md, section 6.3). `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) maps a
range in one call without the traps, and ctypes releases the GIL while it runs, so a thread
doing it in steps, from the start of the region on, keeps ahead of the warm-up's writes on
the other core. Where the kernel lacks it, the warm-up takes its faults as before.
"""

import ctypes
import logging
import threading
from mmap import mmap
from types import TracebackType

log = logging.getLogger(__name__)

MADV_POPULATE_WRITE = 23
# Per call: long enough that the calls cost nothing, short enough to stop soon when asked.
STEP = 16 * 1024 * 1024

_libc = ctypes.CDLL(None, use_errno=True)
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise.restype = ctypes.c_int


class Prefault:
    """While the block runs, a thread maps `mm`'s pages in, from the start, until it has
    mapped them all or the block ends."""

    def __init__(self, mm: mmap) -> None:
        self._size = len(mm)
        # Holds the mapping open (mmap.close refuses while it exists) until the thread is done.
        self._view: ctypes.Array[ctypes.c_char] | None = (ctypes.c_char * self._size).from_buffer(
            mm
        )
        self._address = ctypes.addressof(self._view)
        self._stop = threading.Event()
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
        for offset in range(0, self._size, STEP):
            if self._stop.is_set():
                return
            length = min(STEP, self._size - offset)
            if _madvise(self._address + offset, length, MADV_POPULATE_WRITE) != 0:
                errno = ctypes.get_errno()
                log.debug("no prefault of the cache region (madvise errno %d)", errno)
                return
