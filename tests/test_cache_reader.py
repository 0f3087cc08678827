"""The native read path against its pure-Python reference model (tests/cache_reference.py):
on any bytes a region can hold, however torn or hostile, both give the same answer, and the
native one never crashes, raises or hangs."""

import importlib.util
import mmap
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import service.cache
from service.cache import SharedCache, _reader, shared
from service.cache.layout import RECORD, Offsets, Views, slot_count_for
from tests.cache_reference import reference_get

SHM = Path("/dev/shm")
CAPACITY = 8
BUDGET = 4096
KEY = "b563feb7b2b84b6test"
U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)


@pytest.fixture(scope="module")
def region() -> Iterator[tuple[SharedCache, mmap.mmap]]:
    """A small region and a second mapping of it, through which a test writes raw bytes."""
    name = f"test-reader-{uuid.uuid4().hex[:12]}"
    cache = SharedCache.create(name, capacity=CAPACITY, byte_budget=BUDGET)
    with open(SHM / name, "r+b") as file, mmap.mmap(file.fileno(), 0) as mm:
        yield cache, mm
    cache.close()
    cache.unlink()


@given(st.binary(max_size=200))
def test_the_native_key_hash_is_zlib_crc32(data: bytes) -> None:
    assert _reader.crc32(data) == zlib.crc32(data)


KEY_HASH = zlib.crc32(KEY.encode())
# A record header (size, key_len, val_len, hash): any four numbers, or one close to KEY's own
# so that the bounds checks, not the key comparison, decide.
HEADERS = st.one_of(
    st.tuples(U32, st.integers(0, 2**16 - 1), U32, U32),
    st.tuples(
        st.integers(0, BUDGET + 64),
        st.sampled_from([len(KEY) - 1, len(KEY), len(KEY) + 1]),
        st.one_of(st.integers(0, BUDGET + 64), U32),
        st.sampled_from([KEY_HASH, KEY_HASH ^ 1]),
    ),
)
# One hand-made slot run for KEY: each slot's ref, whether its hash is KEY's, and the record
# header it points at, with KEY's bytes after the header or not.
SLOTS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, BUDGET + 64), U64),
        st.booleans(),
        HEADERS,
        st.booleans(),
    ),
    min_size=1,
    max_size=CAPACITY + 3,
)


@settings(max_examples=400, deadline=None, database=None)
@given(slots=SLOTS, fill=st.binary(min_size=BUDGET, max_size=BUDGET))
def test_native_and_reference_readers_agree_on_any_slots_and_records(
    region: tuple[SharedCache, mmap.mmap],
    slots: list[tuple[int, bool, tuple[int, int, int, int], bool]],
    fill: bytes,
) -> None:
    cache, mm = region
    offsets = Offsets(slot_count_for(CAPACITY), BUDGET)
    mm[offsets.slot_ref : offsets.total] = bytes(offsets.total - offsets.slot_ref)
    mm[offsets.log : offsets.total] = fill
    key = KEY.encode()
    key_hash = KEY_HASH
    views = Views(mm)
    try:
        for step, (ref, same_hash, header, with_key) in enumerate(slots):
            i = (key_hash + step) & views.mask
            views.slot_ref[i] = ref
            views.slot_hash[i] = key_hash if same_hash else (key_hash ^ (step + 1))
            offset = ref - 1
            if offset >= 0 and offset + RECORD.size + len(key) <= BUDGET:
                RECORD.pack_into(mm, offsets.log + offset, *header)
                if with_key:
                    at = offsets.log + offset + RECORD.size
                    mm[at : at + len(key)] = key
    finally:
        views.release()
    expected = reference_get(mm, KEY)
    event("hit" if expected is not None else "miss")
    assert cache.get(KEY) == expected


def test_keys_that_can_never_be_stored_are_misses_and_non_strings_an_error(
    region: tuple[SharedCache, mmap.mmap],
) -> None:
    cache, _ = region
    assert [cache.get(key) for key in ("", "x" * 65, "zakaz-\u00fc", "\x00")] == [None] * 4
    with pytest.raises(TypeError, match="must be str"):
        cache.get(b"bytes")  # type: ignore[arg-type]


def test_a_closed_reader_raises_instead_of_reading_unmapped_memory() -> None:
    name = f"test-reader-{uuid.uuid4().hex[:12]}"
    cache = SharedCache.create(name, capacity=CAPACITY, byte_budget=BUDGET)
    cache.put("k", b"v")
    get = cache.get
    cache.close()
    cache.unlink()
    with pytest.raises(ValueError, match="closed"):
        get("k")


def test_an_extension_built_for_another_record_layout_is_refused_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class StaleReader:
        RECORD_FORMAT = "=IHI"

    monkeypatch.setattr(service.cache, "_reader", StaleReader)
    spec = importlib.util.spec_from_file_location("stale_shared", shared.__file__)
    assert spec is not None
    assert spec.loader is not None
    with pytest.raises(ImportError, match="stale, rebuild it"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
