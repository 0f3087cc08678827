"""Byte layout of a shared cache region: header words, the slot index, and value-log records.

This module owns every number that two processes must agree on to read the same region, and
nothing else: `shared.py` does the locking and the algorithms on top of it. Bump `VERSION`
whenever anything here changes, so that a worker from an older build refuses to attach.

Region, in order (all integers native byte order: the region never leaves this machine)::

    header      HEADER_WORDS u64 words (see the *_W indexes below)
    slot_ref    slot_count u64   record offset + 1 in the value log, 0 = empty slot
    slot_hash   slot_count u32   crc32 of the key, so most probes never touch the log
    ref_bits    slot_count u8    CLOCK reference bit, set by readers on a hit
    (padding to a 64-byte boundary)
    value log   byte_budget bytes, a ring of records

The slot arrays are kept side by side ("struct of arrays") instead of one 12-byte slot
record: a `memoryview.cast` of each array reads one aligned machine word per item access,
with no tuple built as `struct.unpack_from` would, and no u64 straddles a cache line.
The reference bits sit apart from the log because the read path must never write into the
log: a record being read may be moved or overwritten by a writer at the same moment.

A record is `[record_len u32][key_len u16][val_len u32][hash u32][2 pad]` (16 bytes), then
the key, then the value, padded to a multiple of RECORD_ALIGN. Because every record and the
budget are multiples of 16, the space left before the end of the ring is always either 0 or
big enough for a record header, so it can always be filled by a padding record (key_len 0).
"""

import re
import struct
from mmap import mmap
from typing import Final

MAGIC: Final = b"ORDRCACH"
VERSION: Final = 1

# Header words (u64 each). SEQ is the seqlock: odd while a writer is mutating, and also the
# "dirty" marker: a writer that dies mid-mutation leaves it odd for the next writer to find.
MAGIC_W: Final = 0
VERSION_W: Final = 1
CAPACITY_W: Final = 2
SLOT_COUNT_W: Final = 3
BUDGET_W: Final = 4
READY_W: Final = 5
SEQ_W: Final = 8  # starts the second cache line: the words below change on every put
HEAD_W: Final = 9  # log positions grow forever; the ring offset is position % budget
TAIL_W: Final = 10
LOG_USED_W: Final = 11  # head - tail: live, dead and padding records
ENTRIES_W: Final = 12
LIVE_BYTES_W: Final = 13  # record bytes of live entries only
EVICTIONS_W: Final = 14
HEADER_WORDS: Final = 16
HEADER_SIZE: Final = HEADER_WORDS * 8

RECORD: Final = struct.Struct("=IHII2x")
RECORD_HEADER: Final = RECORD.size
RECORD_ALIGN: Final = 16
LOG_ALIGN: Final = 64

MAX_KEY_LEN: Final = 64
MIN_BUDGET: Final = 4096
MAX_CAPACITY: Final = 1 << 26
MAX_BUDGET: Final = 1 << 40

NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
OWNER_SUFFIX: Final = ".owner"

assert RECORD_HEADER == RECORD_ALIGN


def is_valid_name(name: str) -> bool:
    """Safe as a file name in the shm directory and not clashing with an owner lock file."""
    return NAME_RE.fullmatch(name) is not None and not name.endswith(OWNER_SUFFIX)


def record_size(key_len: int, val_len: int) -> int:
    """Bytes one record takes in the log, padding included."""
    raw = RECORD_HEADER + key_len + val_len
    return (raw + RECORD_ALIGN - 1) // RECORD_ALIGN * RECORD_ALIGN


def usable_budget(byte_budget: int) -> int:
    """The log size actually used: rounded down so records tile the ring exactly."""
    return byte_budget // RECORD_ALIGN * RECORD_ALIGN


def slot_count_for(capacity: int) -> int:
    """Power of two >= 2 x capacity: load factor <= 0.5 keeps linear-probe runs short."""
    return 1 << max(1, (2 * capacity - 1).bit_length())


class Offsets:
    """Where each part of a region starts, derived from its three size parameters."""

    __slots__ = ("budget", "log", "ref_bits", "slot_count", "slot_hash", "slot_ref", "total")

    def __init__(self, slot_count: int, budget: int) -> None:
        self.slot_count = slot_count
        self.budget = budget
        self.slot_ref = HEADER_SIZE
        self.slot_hash = self.slot_ref + 8 * slot_count
        self.ref_bits = self.slot_hash + 4 * slot_count
        end_of_index = self.ref_bits + slot_count
        self.log = (end_of_index + LOG_ALIGN - 1) // LOG_ALIGN * LOG_ALIGN
        self.total = self.log + budget


def header_is_sane(capacity: int, slot_count: int, budget: int) -> bool:
    """Whether size parameters read from a region could have been written by `create`."""
    return (
        0 < capacity <= MAX_CAPACITY
        and slot_count == slot_count_for(capacity)
        and MIN_BUDGET <= budget <= MAX_BUDGET
        and budget % RECORD_ALIGN == 0
    )


class Views:
    """Typed views on a mapped, already validated region, shared by the reader and writer.

    `memoryview.cast` items are single native loads/stores of aligned words (see shared.py for
    why that matters). All views must be released before the mmap can be closed.
    """

    __slots__ = (
        "_all",
        "budget",
        "capacity",
        "hdr",
        "log0",
        "mask",
        "mm",
        "offsets",
        "ref_bits",
        "slot_hash",
        "slot_ref",
    )

    def __init__(self, mm: mmap) -> None:
        whole = memoryview(mm)
        self.mm = mm
        self.hdr = whole[:HEADER_SIZE].cast("Q")
        self.capacity: int = self.hdr[CAPACITY_W]
        self.budget: int = self.hdr[BUDGET_W]
        slot_count: int = self.hdr[SLOT_COUNT_W]
        self.offsets = offsets = Offsets(slot_count, self.budget)
        self.mask = slot_count - 1
        self.slot_ref = whole[offsets.slot_ref : offsets.slot_hash].cast("Q")
        self.slot_hash = whole[offsets.slot_hash : offsets.ref_bits].cast("I")
        self.ref_bits = whole[offsets.ref_bits : offsets.ref_bits + slot_count]
        self.log0 = offsets.log
        self._all = (whole, self.hdr, self.slot_ref, self.slot_hash, self.ref_bits)

    def release(self) -> None:
        for view in self._all:
            view.release()
