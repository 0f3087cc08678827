"""The cache's read path in pure Python: the reference model the native reader is checked
against. It follows layout.py field by field, without the seqlock (the tests that use it
hold the region still), and answers what the native `get` must answer on the same bytes."""

import zlib
from mmap import mmap

from service.cache.layout import MAX_KEY_LEN, RECORD, RECORD_HEADER, Views


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
