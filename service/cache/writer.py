"""Mutations of a cache region: the hash index and the CLOCK-evicted value log.

Everything here runs with the writers' lock held and the seqlock odd (`shared.py` arranges
both), so it may trust the region and mutate it in any order: readers ignore what they see
until seq is even again. It still checks the few values whose corruption could make a loop
run forever, and raises `CorruptError` instead.

Index: open addressing with linear probing over a power-of-two slot table at least twice the
capacity. Deletion shifts later entries of the probe run back into the hole instead of leaving
tombstones, so runs never fill up with dead slots and readers can stop at the first empty slot.
A slot's reference bit moves with it.

Log: a ring of records addressed by ever-growing head/tail positions (ring offset = position
% budget, so head - tail is the bytes in use). New records go at the head; if one does not fit
before the end of the ring, the rest of the ring becomes a padding record. Overwriting a key
only unindexes the old record, which stays in the ring as dead bytes until the tail passes it.

Eviction is CLOCK over the log (second-chance FIFO). While a new record lacks room (bytes, or
entries == capacity), look at the tail record: padding or dead (no slot points at its offset)
-> skip it; live with its reference bit set -> clear the bit and move it to the head; live and
unreferenced -> evict it. Moves are capped per put (MAX_SECOND_CHANCES) because readers keep
setting bits concurrently; past the cap the tail is evicted whatever its bit, so making room
always terminates. A move always fits: the bytes it frees at the tail are at least as many as
it needs at the head, padding included.

Runs: while a run of puts fits at the head without evicting or wrapping (a warm-up into an
empty region, most consumer batches), its records are written with one copy and then indexed
in one loop: the same result as putting them one by one, at about half the CPU.
"""

import zlib
from collections.abc import Sequence

from service.cache.layout import (
    ENTRIES_W,
    EVICTIONS_W,
    HEAD_W,
    LIVE_BYTES_W,
    LOG_USED_W,
    RECORD,
    RECORD_ALIGN,
    RECORD_HEADER,
    TAIL_W,
    Views,
    record_size,
)

MAX_SECOND_CHANCES = 64
_ZERO_CHUNK = 1 << 20
_PADDING = [bytes(n) for n in range(RECORD_ALIGN)]
_crc32 = zlib.crc32

# A value as the caller holds it: bytes, or a view on a buffer read from PostgreSQL.
Value = bytes | memoryview
# A record `append_run` wrote, for `index_run`: key, hash, slot reference (ring offset + 1).
Indexed = tuple[bytes, int, int]


class CorruptError(Exception):
    """The log disagrees with its header: only a bug or a foreign write can cause it."""


class Writer:
    """The mutating operations on one region's views; the caller holds the writers' lock."""

    def __init__(self, views: Views) -> None:
        self._v = views
        self._hdr = views.hdr
        self._mm = views.mm
        self._log0 = views.log0
        self._budget = views.budget
        self._mask = views.mask

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
        `index_run`. One copy of the joined records is far cheaper than a few small slice
        writes per record, and in one pass the fresh pages are faulted in order. One loop per
        record does the hash, the header and the sizes: this is the warm-up's inner loop."""
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

    def clear(self) -> None:
        """Empty the index and the log; evictions and the ready flag are kept."""
        offsets, zeros = self._v.offsets, bytes(_ZERO_CHUNK)
        for start in range(offsets.slot_ref, offsets.log, _ZERO_CHUNK):
            end = min(start + _ZERO_CHUNK, offsets.log)
            self._mm[start:end] = zeros[: end - start]
        for word in (HEAD_W, TAIL_W, LOG_USED_W, ENTRIES_W, LIVE_BYTES_W):
            self._hdr[word] = 0

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
                    raise CorruptError(f"{hdr[ENTRIES_W]} entries in an empty log")
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
            raise CorruptError(f"bad record length {size} at log offset {offset}")
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
        self._mm[key_start:value_start] = key
        self._mm[value_start : value_start + len(value)] = value
        return offset
