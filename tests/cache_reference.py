"""The cache's read and write paths in pure Python: the reference models the native reader
and writer are checked against. They follow layout.py field by field, without the seqlock (the
tests that use them hold the region still): `reference_get` answers what the native `get` must
answer on the same bytes, and `ReferenceWriter` leaves the bytes the native `put_run` must
leave (the algorithms are described in service/cache/_writer.c)."""

import zlib
from collections.abc import Sequence
from mmap import mmap

from service.cache.layout import (
    ENTRIES_W,
    EVICTIONS_W,
    HEAD_W,
    LIVE_BYTES_W,
    LOG_USED_W,
    MAX_KEY_LEN,
    RECORD,
    RECORD_ALIGN,
    RECORD_HEADER,
    TAIL_W,
    Views,
    record_size,
)
from service.cache.shared import MAX_SECOND_CHANCES, Value


def reference_get(mm: mmap, key: str) -> bytes | None:
    """The value the region holds for `key`, or None; any inconsistency reads as a miss."""
    if not key.isascii() or not 0 < len(key) <= MAX_KEY_LEN:
        return None
    data = key.encode("ascii")
    key_hash = zlib.crc32(data)
    views = Views(mm)
    try:
        i = key_hash & views.mask
        for _ in range(min(views.mask + 1, views.capacity + 1)):
            ref = views.slot_ref[i]
            if ref == 0:
                return None
            if views.slot_hash[i] == key_hash:
                offset = ref - 1
                if offset + RECORD_HEADER > views.budget:
                    return None
                start = views.log0 + offset
                size, rec_key_len, val_len, rec_hash = RECORD.unpack_from(mm, start)
                if (
                    rec_key_len == len(data)
                    and rec_hash == key_hash
                    and RECORD_HEADER + len(data) + val_len <= size
                    and offset + size <= views.budget
                ):
                    key_start = start + RECORD_HEADER
                    if mm[key_start : key_start + len(data)] == data:
                        value_start = key_start + len(data)
                        return mm[value_start : value_start + val_len]
            i = (i + 1) & views.mask
        return None
    finally:
        views.release()


_PADDING = [bytes(n) for n in range(RECORD_ALIGN)]
_crc32 = zlib.crc32

# A record `append_run` wrote, for `index_run`: key, hash, slot reference (ring offset + 1).
Indexed = tuple[bytes, int, int]


class ReferenceCorruptError(Exception):
    """The log disagrees with its header (the native writer's CorruptError)."""


class ReferenceWriter:
    """The mutating operations on one region's views, in the order the native writer does
    them; the caller holds the region still. It leaves the seq word alone."""

    def __init__(self, views: Views) -> None:
        self._v = views
        self._hdr = views.hdr
        self._mm = views.mm
        self._log0 = views.log0
        self._budget = views.budget
        self._mask = views.mask

    def put_run(self, run: Sequence[tuple[bytes, Value]]) -> int:
        """The native `put_run`: the whole run at the head if it fits there without evicting
        or wrapping, else one put after another; how many were stored."""
        written = self.append_run(run)
        if written is not None:
            self.index_run(*written)
            return len(run)
        return sum(self.put(key, _crc32(key), value) for key, value in run)

    def put(self, key: bytes, key_hash: int, value: Value) -> bool:
        """Insert or overwrite; False (with any old entry removed) if it can never fit."""
        size = record_size(len(key), len(value))
        slot = self._find_slot(key, key_hash)
        if slot >= 0:
            self._drop(slot)
        if size > self._budget:
            return False
        self._make_room(size)
        offset = self._append(size, key, value, key_hash)
        self._index(key_hash, offset, size)
        return True

    def append_run(self, run: Sequence[tuple[bytes, Value]]) -> tuple[list[Indexed], int] | None:
        """Write the records of `run` (key, value) one after another at the head, if they all
        fit there without evicting or wrapping: for `index_run`, each record's key, hash and
        slot reference (ring offset + 1), and the bytes written; else None and nothing written.
        Needs no odd seq: no slot points past the head, so no reader looks there until
        `index_run`."""
        hdr, budget = self._hdr, self._budget
        if hdr[ENTRIES_W] + len(run) > self._v.capacity:
            return None
        offset = hdr[HEAD_W] % budget
        ref = offset + 1
        parts: list[Value] = []
        indexed: list[Indexed] = []
        pack, padding, crc32 = RECORD.pack, _PADDING, _crc32
        for key, value in run:
            key_len, val_len = len(key), len(value)
            pad = -(key_len + val_len) % RECORD_ALIGN
            size = RECORD_HEADER + key_len + val_len + pad
            key_hash = crc32(key)
            parts += (pack(size, key_len, val_len, key_hash), key, value, padding[pad])
            indexed.append((key, key_hash, ref))
            ref += size
        total = ref - 1 - offset
        if hdr[LOG_USED_W] + total > budget or offset + total > budget:
            return None
        start = self._log0 + offset
        self._mm[start : start + total] = b"".join(parts)
        return indexed, total

    def index_run(self, indexed: list[Indexed], total: int) -> None:
        """Index the records `append_run` wrote and move the head past them: the same result
        as putting them one by one, an older entry of the same key dropped. The counters go
        up first: a key twice in one run drops its first record, which must already count."""
        hdr = self._hdr
        hdr[HEAD_W] += total
        hdr[LOG_USED_W] += total
        hdr[ENTRIES_W] += len(indexed)
        hdr[LIVE_BYTES_W] += total
        refs, hashes, bits, mask = self._v.slot_ref, self._v.slot_hash, self._v.ref_bits, self._mask
        mm, log0 = self._mm, self._log0
        for key, key_hash, ref in indexed:
            i = key_hash & mask
            while old := refs[i]:
                if hashes[i] == key_hash:
                    start = log0 + old - 1 + RECORD_HEADER
                    if mm[start : start + len(key)] == key and (
                        RECORD.unpack_from(mm, start - RECORD_HEADER)[1] == len(key)
                    ):
                        self._drop(i)
                        i = key_hash & mask
                        continue
                i = (i + 1) & mask
            hashes[i] = key_hash
            bits[i] = 0
            refs[i] = ref

    # ---- index ------------------------------------------------------------------------------

    def _find_slot(self, key: bytes, key_hash: int) -> int:
        """Slot of `key`, or -1."""
        refs, hashes, mask, mm = self._v.slot_ref, self._v.slot_hash, self._mask, self._mm
        i = key_hash & mask
        while refs[i]:
            if hashes[i] == key_hash:
                start = self._log0 + refs[i] - 1
                key_start = start + RECORD_HEADER
                if RECORD.unpack_from(mm, start)[1] == len(key) and (
                    mm[key_start : key_start + len(key)] == key
                ):
                    return i
            i = (i + 1) & mask
        return -1

    def _slot_pointing_at(self, key_hash: int, offset: int) -> int:
        """Slot whose entry is the record at `offset`, or -1 if that record is dead."""
        refs, mask, target = self._v.slot_ref, self._mask, offset + 1
        i = key_hash & mask
        while refs[i]:
            if refs[i] == target:
                return i
            i = (i + 1) & mask
        return -1

    def _index(self, key_hash: int, offset: int, size: int) -> None:
        refs, mask = self._v.slot_ref, self._mask
        i = key_hash & mask
        while refs[i]:
            i = (i + 1) & mask
        self._v.slot_hash[i] = key_hash
        self._v.ref_bits[i] = 0
        refs[i] = offset + 1
        self._hdr[ENTRIES_W] += 1
        self._hdr[LIVE_BYTES_W] += size

    def _unindex(self, hole: int) -> None:
        """Backward-shift deletion: pull later entries of the probe run into the hole."""
        refs, hashes, bits, mask = self._v.slot_ref, self._v.slot_hash, self._v.ref_bits, self._mask
        j = hole
        while True:
            j = (j + 1) & mask
            if refs[j] == 0:
                break
            # The entry at j may fill the hole unless its home slot lies cyclically in (hole, j].
            if (j - hashes[j]) & mask >= (j - hole) & mask:
                refs[hole], hashes[hole], bits[hole] = refs[j], hashes[j], bits[j]
                hole = j
        refs[hole] = 0
        bits[hole] = 0

    def _drop(self, slot: int) -> None:
        """Remove a live entry that is being overwritten (not an eviction)."""
        size = RECORD.unpack_from(self._mm, self._log0 + self._v.slot_ref[slot] - 1)[0]
        self._unindex(slot)
        self._hdr[ENTRIES_W] -= 1
        self._hdr[LIVE_BYTES_W] -= size

    # ---- value log --------------------------------------------------------------------------

    def _span(self, size: int) -> int:
        """Log bytes a record of `size` takes at the head, padding to the ring's end included."""
        gap = self._budget - self._hdr[HEAD_W] % self._budget
        return size if size <= gap else gap + size

    def _make_room(self, size: int) -> None:
        hdr, chances = self._hdr, MAX_SECOND_CHANCES
        while True:
            used = hdr[LOG_USED_W]
            if used + self._span(size) <= self._budget and hdr[ENTRIES_W] < self._v.capacity:
                return
            if used == 0:
                if hdr[ENTRIES_W]:
                    raise ReferenceCorruptError(f"{hdr[ENTRIES_W]} entries in an empty log")
                # An empty ring may restart at offset 0, where any record up to the budget fits.
                hdr[HEAD_W] = hdr[TAIL_W] = 0
                continue
            chances = self._reclaim_tail(chances)

    def _reclaim_tail(self, chances: int) -> int:
        """Free the tail record (skip, evict, or second chance); return the chances left."""
        hdr, budget = self._hdr, self._budget
        tail = hdr[TAIL_W]
        offset = tail % budget
        start = self._log0 + offset
        size, key_len, _, key_hash = RECORD.unpack_from(self._mm, start)
        if (
            size < RECORD_HEADER
            or size % RECORD_ALIGN
            or size > hdr[LOG_USED_W]
            or offset + size > budget
        ):
            raise ReferenceCorruptError(f"bad record length {size} at log offset {offset}")
        hdr[TAIL_W] = tail + size
        hdr[LOG_USED_W] -= size
        if key_len == 0:
            return chances  # padding
        slot = self._slot_pointing_at(key_hash, offset)
        if slot < 0:
            return chances  # dead: overwritten, or evicted earlier
        if chances > 0 and self._v.ref_bits[slot]:
            self._v.ref_bits[slot] = 0
            # Copied out first: the head may overlap the bytes just freed.
            record = self._mm[start : start + size]
            new_offset = self._reserve(size)
            self._mm[self._log0 + new_offset : self._log0 + new_offset + size] = record
            self._v.slot_ref[slot] = new_offset + 1
            return chances - 1
        self._unindex(slot)
        hdr[ENTRIES_W] -= 1
        hdr[LIVE_BYTES_W] -= size
        hdr[EVICTIONS_W] += 1
        return chances

    def _reserve(self, size: int) -> int:
        """Claim `size` bytes at the head, padding out the ring's end first if the record would
        not fit before it, and return their ring offset. Room was made beforehand."""
        hdr, budget = self._hdr, self._budget
        head = hdr[HEAD_W]
        offset = head % budget
        gap = budget - offset
        if size > gap:
            RECORD.pack_into(self._mm, self._log0 + offset, gap, 0, 0, 0)
            head += gap
            hdr[LOG_USED_W] += gap
            offset = 0
        hdr[HEAD_W] = head + size
        hdr[LOG_USED_W] += size
        return offset

    def _append(self, size: int, key: bytes, value: Value, key_hash: int) -> int:
        offset = self._reserve(size)
        start = self._log0 + offset
        RECORD.pack_into(self._mm, start, size, len(key), len(value), key_hash)
        key_start = start + RECORD_HEADER
        value_start = key_start + len(key)
        value_end = value_start + len(value)
        self._mm[key_start:value_start] = key
        self._mm[value_start:value_end] = value
        self._mm[value_end : start + size] = _PADDING[start + size - value_end]
        return offset
