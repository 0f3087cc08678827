"""`SharedCache`: one copy of recent orders (id -> encoded JSON) shared by all processes.

The API workers read it on every request; the consumer and the warm-up write it. This module
owns the concurrency protocol. The lock-free read path and the write path (the index and its
CLOCK eviction) are native code (`_reader.c`, `_writer.c`, every offset handed to them from
here), the byte layout is in `layout.py`, and the files behind a region in `region.py`.

Concurrency:

* Writers (any process) exclude each other with `flock` on the region file's own fd, plus a
  `threading.Lock` because flock does not exclude threads sharing one open file. The kernel
  drops a flock when its holder dies, so a killed writer never leaves the cache locked. After
  a fork the fd is reopened: parent and child sharing one open file would share one lock.
* Readers take no lock. A global seqlock (`SEQ_W`) is odd while a writer mutates and is bumped
  around each run of up to RUN puts (not around a whole batch, so readers are not starved
  during a warm-up). A reader reads seq, looks the key up, copies
  the value out, and re-reads seq; if it was odd or has changed it retries for up to
  READ_PATIENCE_S and then reports a miss. A miss is always safe: the caller falls back to
  PostgreSQL, and asks the cache once more if PostgreSQL cannot answer.
  Because a reader may look at memory in the middle of being rewritten, every offset and
  length it reads is bounds-checked and every probe loop is bounded, so garbage gives a miss,
  never an exception or a hang. Readers write nothing but CLOCK reference bits, which sit
  outside the log.
* The seq word is also the dirty marker: a writer killed between its two increments leaves it
  odd. The next writer to take the lock sees that, clears the whole cache (entries are only a
  copy of PostgreSQL) and makes seq even again; readers see misses meanwhile.
* Ordering: the writer stores header words and slots as single aligned atomic words and the
  reader loads them so, so a word is never torn. The writer fences after making seq odd and
  releases it even; the reader's seq loads are acquire loads. The record bytes are plain
  copies, ordered by those fences on x86-64 (stores become visible in program order); a weaker
  model (ARM) would need the reader's copies made atomic too.

Keys hash with crc32 (zlib's), which, unlike `hash()`, is the same in every process.
"""

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from mmap import mmap

from service.cache import _reader, _writer
from service.cache._writer import CorruptError
from service.cache.layout import (
    ENTRIES_W,
    EVICTIONS_W,
    HEAD_W,
    LIVE_BYTES_W,
    LOG_USED_W,
    MAX_BUDGET,
    MAX_CAPACITY,
    MAX_KEY_LEN,
    MIN_BUDGET,
    READY_W,
    RECORD,
    SEQ_W,
    TAIL_W,
    Views,
    usable_budget,
)
from service.cache.prefault import Prefault
from service.cache.region import (
    build_region,
    lock_owner,
    open_region,
    region_path,
    relock_owner,
    remove_files,
)
from service.errors import CacheError, CacheKeyError

log = logging.getLogger(__name__)

READ_TRIES = 64
# How long a reader waits for a writer in the middle of an update before it reports a miss:
# far longer than a run takes, so only a writer that lost its CPU or the GIL mid-run (the
# consumer's cache fill beside its writer thread) makes readers miss.
READ_PATIENCE_S = 0.002
# Puts under one odd seq: a reader waits out a run of them.
RUN = 32
# Tail records a put may move to the head for their reference bit before it evicts whatever
# it meets: readers keep setting bits, so without a cap making room might never end.
MAX_SECOND_CHANCES = 64

_yield = os.sched_yield

# A value as the caller holds it: bytes, or a view on a buffer read from PostgreSQL.
Value = bytes | memoryview

for _native in (_reader, _writer):
    if RECORD.format != _native.RECORD_FORMAT:
        raise ImportError(
            f"{_native.__name__} lays records out as {_native.RECORD_FORMAT!r} but layout.py "
            f"as {RECORD.format!r}: the extension is stale, rebuild it (./dev reinstalls it)"
        )


def _spans(views: Views) -> dict[str, int]:
    """Where the slot arrays and the log lie, and the key limit: what both native types take."""
    offsets = views.offsets
    return {
        "slot_ref_at": offsets.slot_ref,
        "slot_hash_at": offsets.slot_hash,
        "ref_bits_at": offsets.ref_bits,
        "log_at": offsets.log,
        "slot_count": offsets.slot_count,
        "budget": offsets.budget,
        "max_key_len": MAX_KEY_LEN,
    }


def _native_reader(mm: mmap, views: Views) -> _reader.Reader:
    """The native read path over a mapped region, given every offset from layout.py.

    In any consistent state at most `capacity` slots are used, so a probe meets an empty slot
    within capacity + 1 steps; a longer run can only come from a torn read.
    """
    return _reader.Reader(
        mm,
        **_spans(views),
        seq_at=SEQ_W * 8,
        max_probe=min(views.offsets.slot_count, views.capacity + 1),
        patience_s=READ_PATIENCE_S,
    )


def _native_writer(mm: mmap, views: Views) -> _writer.Writer:
    """The native write path over a mapped region, given every offset from layout.py."""
    return _writer.Writer(
        mm,
        **_spans(views),
        header_words=(SEQ_W, HEAD_W, TAIL_W, LOG_USED_W, ENTRIES_W, LIVE_BYTES_W, EVICTIONS_W),
        capacity=views.capacity,
        max_second_chances=MAX_SECOND_CHANCES,
    )


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes_used: int  # log bytes (record headers, keys, values, alignment) of live entries
    byte_budget: int
    capacity: int
    evictions: int
    ready: bool


def _key_bytes(key: str) -> bytes:
    try:
        data = key.encode("ascii")
    except UnicodeEncodeError:
        raise CacheKeyError(f"cache key {key!r} is not ASCII") from None
    if not 0 < len(data) <= MAX_KEY_LEN:
        raise CacheKeyError(f"cache key {key!r} must be 1-{MAX_KEY_LEN} characters")
    return data


class SharedCache:
    """A handle on one shared region; see the module docstring. Use `create` or `attach`."""

    def __init__(self, name: str, fd: int, mm: mmap, owner_fd: int | None) -> None:
        self.name = name
        self._fd = fd
        self._owner_fd = owner_fd
        self._is_owner = owner_fd is not None
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        self._views = views = Views(mm)
        self._writer = _native_writer(mm, views)
        self._mm = mm
        self._hdr = views.hdr
        self._budget = views.budget
        self._reader = _native_reader(mm, views)
        # The read path, bound straight to native code: a hit is one C call.
        self.get: Callable[[str], bytes | None] = self._reader.get
        self._closed = False

    @classmethod
    def create(cls, name: str, capacity: int, byte_budget: int) -> "SharedCache":
        """A new empty region, replacing a stale one; CacheError if a live owner holds it."""
        region_path(name)
        if not 0 < capacity <= MAX_CAPACITY:
            raise CacheError(f"cache region {name!r}: capacity {capacity} not in 1-{MAX_CAPACITY}")
        budget = usable_budget(byte_budget)
        if not MIN_BUDGET <= budget <= MAX_BUDGET:
            raise CacheError(
                f"cache region {name!r}: byte budget {byte_budget} not in {MIN_BUDGET}-{MAX_BUDGET}"
            )
        owner_fd = lock_owner(name)
        try:
            fd, mm = build_region(name, capacity, budget)
        except BaseException:
            os.close(owner_fd)
            raise
        return cls(name, fd, mm, owner_fd)

    @classmethod
    def attach(cls, name: str) -> "SharedCache":
        """The existing region of `name`; CacheError if missing or not a compatible cache."""
        fd, mm = open_region(name)
        return cls(name, fd, mm, None)

    # ---- read path (no lock): `get`, bound in __init__ -------------------------------------

    def stats(self) -> CacheStats:
        """Counters from one consistent moment, if one can be seen within a few tries."""
        hdr = self._hdr
        for _ in range(READ_TRIES):
            seq = hdr[SEQ_W]
            entries, live, evictions = hdr[ENTRIES_W], hdr[LIVE_BYTES_W], hdr[EVICTIONS_W]
            if not seq & 1 and hdr[SEQ_W] == seq:
                break
            _yield()
        return CacheStats(
            entries=entries,
            bytes_used=live,
            byte_budget=self._budget,
            capacity=self._views.capacity,
            evictions=evictions,
            ready=bool(hdr[READY_W]),
        )

    # ---- write path (flock) -----------------------------------------------------------------

    def put(self, key: str, value: bytes) -> bool:
        """Insert or overwrite; False (and any old value dropped) if `value` can never fit."""
        return self.put_many(((key, value),)) == 1

    def try_put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """`put_many`, unless another writer holds the lock at this moment: then nothing is
        stored and the answer is 0. For the request path, where blocking would stall a
        worker's whole event loop behind the consumer's batch (thousands of puts under one
        lock); the orders are simply filled by a later miss."""
        return self._store([(_key_bytes(key), value) for key, value in items], blocking=False)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Store all items under one lock acquisition; return how many were stored."""
        # Keys are checked and a lazy iterable drained before locking, so a bad key changes
        # nothing and a slow producer never holds the writers' lock.
        return self._store([(_key_bytes(key), value) for key, value in items], blocking=True)

    def put_encoded(self, items: Sequence[tuple[bytes, Value]]) -> int:
        """`put_many` for keys that are already ASCII bytes (the warm-up reads them so, and the
        consumer's ids are validated): checked all together before anything is stored, which
        costs far less than one by one."""
        keys = [key for key, _ in items]
        if keys and not (
            min(map(len, keys)) > 0
            and max(map(len, keys)) <= MAX_KEY_LEN
            and b"".join(keys).isascii()
        ):
            bad = next(k for k in keys if not (0 < len(k) <= MAX_KEY_LEN and k.isascii()))
            raise CacheKeyError(f"cache key {bad!r} must be 1-{MAX_KEY_LEN} ASCII characters")
        return self._store(items, blocking=True)

    def _store(self, batch: Sequence[tuple[bytes, Value]], blocking: bool) -> int:
        if not batch:
            return 0
        stored = 0
        fd = self._lock_fd()
        if not self._thread_lock.acquire(blocking=blocking):
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            try:
                if self._hdr[SEQ_W] & 1:
                    # Only a writer killed between its two seq increments leaves seq odd.
                    self._recover("a writer died in the middle of an update")
                    self._hdr[SEQ_W] += 1
                for start in range(0, len(batch), RUN):
                    stored += self._put_run_locked(batch[start : start + RUN])
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()
        return stored

    def prefaulting(self) -> Prefault:
        """A context in which a thread maps the region's pages in ahead of a bulk fill."""
        return Prefault(self._views)

    def mark_ready(self) -> None:
        """Record that warm-up finished. One aligned word store: no lock needed."""
        self._hdr[READY_W] = 1

    def _lock_fd(self) -> int:
        """The fd to flock, reopened after a fork: a child sharing the parent's open file
        would share its lock, and two writers holding "one" lock would corrupt the region."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread_lock = threading.Lock()
            inherited, self._fd = self._fd, os.open(f"/proc/self/fd/{self._fd}", os.O_RDWR)
            os.close(inherited)
            if self._owner_fd is not None:
                # Closing (never unlocking) leaves the parent's owner lock in place.
                os.close(self._owner_fd)
                self._owner_fd = None
                self._is_owner = False
        return self._fd

    def _put_run_locked(self, items: Sequence[tuple[bytes, Value]]) -> int:
        """Store a run of items under one odd seq; a corrupt region is cleared instead."""
        try:
            return self._writer.put_run(items)
        except CorruptError as exc:
            self._recover(str(exc))  # seq was left odd: readers miss until the next line
            self._hdr[SEQ_W] += 1
            return 0

    def _recover(self, reason: str) -> None:
        """Clear everything; the caller holds the lock and keeps seq odd until it is done."""
        log.warning("cache region %r: %s; clearing all entries", self.name, reason)
        self._writer.clear()

    # ---- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the region; the owner also releases the owner lock. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._reader.release()
        self._writer.release()
        self._views.release()
        self._mm.close()
        os.close(self._fd)
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # closing the last fd of the lock's open file releases it
            self._owner_fd = None

    def unlink(self) -> None:
        """Remove the region's files (owner only), before or after `close`.

        After `close` the owner lock is taken again first; if a new live owner has created
        the region since, its files are left alone.
        """
        if not self._is_owner:
            raise CacheError(f"cache region {self.name!r}: only its owner may unlink it")
        if self._owner_fd is not None and self._pid == os.getpid():
            remove_files(self.name)
            return
        fd = relock_owner(self.name)
        if fd is None:
            log.warning("cache region %r has a new live owner; not removing it", self.name)
            return
        try:
            remove_files(self.name)
        finally:
            os.close(fd)
