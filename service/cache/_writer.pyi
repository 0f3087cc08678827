"""Types of the native write path built from `_writer.c`."""

from collections.abc import Sequence
from mmap import mmap

RECORD_FORMAT: str

class CorruptError(Exception): ...

class Writer:
    def __init__(
        self,
        region: mmap,
        *,
        header_words: tuple[int, int, int, int, int, int, int],
        slot_ref_at: int,
        slot_hash_at: int,
        ref_bits_at: int,
        log_at: int,
        slot_count: int,
        budget: int,
        capacity: int,
        max_key_len: int,
        max_second_chances: int,
    ) -> None: ...
    def put_run(self, run: Sequence[tuple[bytes, bytes | memoryview]], /) -> int: ...
    def clear(self) -> None: ...
    def release(self) -> None: ...
