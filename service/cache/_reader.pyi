"""Types of the native read path built from `_reader.c`."""

from mmap import mmap

RECORD_FORMAT: str

class Reader:
    def __init__(
        self,
        region: mmap,
        *,
        seq_at: int,
        slot_ref_at: int,
        slot_hash_at: int,
        ref_bits_at: int,
        log_at: int,
        slot_count: int,
        budget: int,
        max_probe: int,
        max_key_len: int,
        patience_s: float,
    ) -> None: ...
    def get(self, key: str, /) -> bytes | None: ...
    def release(self) -> None: ...

def crc32(data: bytes, /) -> int: ...
