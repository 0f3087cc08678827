"""Unit tests of the shared-memory cache in one process, and a model-based test of its
contents under any sequence of puts, overwrites and gets."""

import fcntl
import mmap
import os
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.cache import SharedCache
from service.cache.layout import (
    HEADER_SIZE,
    SEQ_W,
    Offsets,
    Views,
    record_size,
    slot_count_for,
)
from service.cache.region import region_path
from service.errors import CacheError, CacheKeyError
from tests.cache_reference import ReferenceWriter, reference_get

SHM = Path("/dev/shm")
BIG_BUDGET = 1 << 20


def region_files(name: str) -> list[Path]:
    return [SHM / name, SHM / f"{name}.owner", SHM / f".{name}.tmp"]


def remove_region_files(name: str) -> None:
    for path in region_files(name):
        path.unlink(missing_ok=True)


@pytest.fixture
def name() -> Iterator[str]:
    """A region name of this test only; its files are removed afterwards whatever happens."""
    region = f"test-cache-{uuid.uuid4().hex[:12]}"
    yield region
    remove_region_files(region)


@pytest.fixture
def cache(name: str) -> Iterator[SharedCache]:
    owner = SharedCache.create(name, capacity=100, byte_budget=BIG_BUDGET)
    yield owner
    owner.close()
    owner.unlink()


@contextmanager
def mapped(name: str) -> Iterator[mmap.mmap]:
    """A mapping of the whole region of `name`, as another process would have it."""
    with open(SHM / name, "r+b") as file, mmap.mmap(file.fileno(), 0) as mm:
        yield mm


def set_seq(name: str, value: int) -> int:
    """Overwrite the region's seqlock word, as a writer killed mid-put would leave it."""
    with open(SHM / name, "r+b") as file, mmap.mmap(file.fileno(), HEADER_SIZE) as mm:
        words = memoryview(mm).cast("Q")
        old: int = words[SEQ_W]
        words[SEQ_W] = value
        words.release()
    return old


def test_attached_handle_sees_what_the_owner_put(cache: SharedCache, name: str) -> None:
    assert cache.put("order-1", b'{"id": 1}')
    reader = SharedCache.attach(name)
    try:
        assert reader.get("order-1") == b'{"id": 1}'
        assert reader.put("order-2", b"two")
        assert cache.get("order-2") == b"two"
    finally:
        reader.close()


def test_missing_key_and_unusable_keys_read_as_misses(cache: SharedCache) -> None:
    assert cache.get("nope") is None
    assert cache.get("") is None
    assert cache.get("x" * 65) is None
    assert cache.get("zakaz-\u00fc") is None


def test_put_rejects_keys_that_are_empty_overlong_or_not_ascii(cache: SharedCache) -> None:
    for key in ("", "x" * 65, "zakaz-\u00fc"):
        with pytest.raises(CacheKeyError, match="cache key"):
            cache.put(key, b"v")
    assert cache.stats().entries == 0


def test_empty_values_and_64_character_keys_are_stored(cache: SharedCache) -> None:
    assert cache.put("k" * 64, b"")
    assert cache.get("k" * 64) == b""


def test_overwrite_replaces_value_and_keeps_one_entry(cache: SharedCache) -> None:
    assert cache.put("order-1", b"first version")
    assert cache.put("order-1", b"second, longer version")
    assert cache.get("order-1") == b"second, longer version"
    stats = cache.stats()
    assert stats.entries == 1
    assert stats.bytes_used == record_size(len("order-1"), len(b"second, longer version"))
    assert stats.evictions == 0


def test_put_many_stores_all_items_and_counts_them(cache: SharedCache) -> None:
    items = [(f"order-{i}", f"value {i}".encode()) for i in range(10)]
    assert cache.put_many(iter(items)) == 10
    assert all(cache.get(key) == value for key, value in items)
    assert cache.put_many([]) == 0


def test_put_encoded_stores_ascii_byte_keys_and_value_views_like_put_many(
    cache: SharedCache,
) -> None:
    message = memoryview(b"".join(f"value {i};".encode() for i in range(40)))
    items = [(f"order-{i}".encode(), message[i * 9 : i * 9 + 8]) for i in range(10)]
    assert cache.put_encoded(items) == 10
    assert all(cache.get(key.decode()) == bytes(value) for key, value in items)
    assert cache.put_encoded([]) == 0


@pytest.mark.parametrize("bad", [b"", b"x" * 65, "zakaz-\u00fc".encode()])
def test_put_encoded_stores_nothing_if_one_key_is_bad(cache: SharedCache, bad: bytes) -> None:
    with pytest.raises(CacheKeyError, match="cache key"):
        cache.put_encoded([(b"good", b"v"), (bad, b"v")])
    assert cache.stats().entries == 0


def test_try_put_many_stores_nothing_while_another_writer_holds_the_lock(
    cache: SharedCache, name: str
) -> None:
    other_writer = os.open(region_path(name), os.O_RDWR)
    try:
        fcntl.flock(other_writer, fcntl.LOCK_EX)
        assert cache.try_put_many([("busy", b"{}"), ("also", b"{}")]) == 0
        assert cache.get("busy") is None
        fcntl.flock(other_writer, fcntl.LOCK_UN)
        assert cache.try_put_many([("busy", b"{}"), ("also", b"{}")]) == 2
        assert cache.get("busy") == b"{}"
    finally:
        os.close(other_writer)


def test_put_many_counts_only_the_values_that_fit(cache: SharedCache) -> None:
    items = [("a", b"small"), ("b", bytes(BIG_BUDGET)), ("c", b"small too")]
    assert cache.put_many(items) == 2
    assert cache.get("b") is None


def test_a_batch_overwriting_keys_keeps_one_entry_each_with_the_last_value(name: str) -> None:
    """Batches longer than a run, into an empty region and over it: stored and indexed in
    runs, with the same result as one put after another."""
    cache = SharedCache.create(name, capacity=1000, byte_budget=BIG_BUDGET)
    try:
        first = [(f"order-{i}", f"first {i}".encode()) for i in range(300)]
        assert cache.put_many(first) == 300
        again = [(f"order-{i % 50}", f"again {i}".encode()) for i in range(100)]
        assert cache.put_many(again) == 100
        expected = dict(first) | dict(again)
        assert all(cache.get(key) == value for key, value in expected.items())
        stats = cache.stats()
        assert stats.entries == 300
        assert stats.bytes_used == sum(record_size(len(k), len(v)) for k, v in expected.items())
    finally:
        cache.close()
        cache.unlink()


def test_a_key_twice_in_one_run_into_an_empty_region_keeps_the_last_value(
    cache: SharedCache,
) -> None:
    assert cache.put_many([("order-1", b"first"), ("order-1", b"second")]) == 2
    assert cache.put_encoded([(b"order-2", b"first"), (b"order-2", memoryview(b"second"))]) == 2
    assert cache.get("order-1") == cache.get("order-2") == b"second"
    stats = cache.stats()
    assert stats.entries == 2
    assert stats.bytes_used == 2 * record_size(len("order-1"), len(b"second"))


def test_a_batch_larger_than_the_budget_keeps_its_newest_items(name: str) -> None:
    cache = SharedCache.create(name, capacity=1000, byte_budget=8192)
    items = [(f"k{i:02d}", bytes(1000)) for i in range(20)]
    try:
        assert cache.put_many(items) == 20
        present = [i for i in range(20) if cache.get(f"k{i:02d}") is not None]
        assert present == list(range(20 - len(present), 20))
        assert cache.stats().evictions == 20 - len(present)
    finally:
        cache.close()
        cache.unlink()


def test_capacity_by_count_evicts_the_oldest_unread_entries(name: str) -> None:
    cache = SharedCache.create(name, capacity=4, byte_budget=BIG_BUDGET)
    try:
        for i in range(6):
            assert cache.put(f"k{i}", b"v")
        assert [cache.get(f"k{i}") for i in range(6)] == [None, None, b"v", b"v", b"v", b"v"]
        stats = cache.stats()
        assert (stats.entries, stats.evictions, stats.capacity) == (4, 2, 4)
    finally:
        cache.close()
        cache.unlink()


def test_byte_budget_evicts_oldest_entries_to_make_room(name: str) -> None:
    cache = SharedCache.create(name, capacity=1000, byte_budget=8192)
    value = bytes(1000)
    try:
        for i in range(20):
            assert cache.put(f"k{i:02d}", value)
            assert cache.stats().bytes_used <= 8192
        present = [i for i in range(20) if cache.get(f"k{i:02d}") is not None]
        assert present == list(range(20 - len(present), 20))
        stats = cache.stats()
        assert stats.entries == len(present)
        assert stats.evictions == 20 - len(present)
        assert stats.byte_budget == 8192
    finally:
        cache.close()
        cache.unlink()


def test_recently_read_entries_survive_eviction_longer_than_unread_ones(name: str) -> None:
    cache = SharedCache.create(name, capacity=4, byte_budget=BIG_BUDGET)
    try:
        for key in "abcd":
            cache.put(key, key.encode())
        assert cache.get("a") == b"a"
        cache.put("e", b"e")
        assert cache.get("a") == b"a"
        assert cache.get("b") is None
        cache.put("f", b"f")
        assert cache.get("c") is None
        assert cache.get("a") == b"a"
    finally:
        cache.close()
        cache.unlink()


def test_a_put_gives_at_most_64_second_chances_then_evicts_whatever_it_meets(name: str) -> None:
    cache = SharedCache.create(name, capacity=100, byte_budget=BIG_BUDGET)
    try:
        cache.put_many((f"k{i}", b"v") for i in range(100))
        assert all(cache.get(f"k{i}") == b"v" for i in range(100))  # every bit set
        cache.put("new", b"v")
        # k0-k63 moved to the head with their bits cleared; k64 evicted though read.
        assert [i for i in range(100) if cache.get(f"k{i}") is None] == [64]
        assert cache.get("new") == b"v"
    finally:
        cache.close()
        cache.unlink()


def test_value_too_large_is_rejected_and_the_old_value_dropped(name: str) -> None:
    cache = SharedCache.create(name, capacity=10, byte_budget=8192)
    try:
        assert cache.put("order-1", b"old")
        assert not cache.put("order-1", bytes(8192))
        assert cache.get("order-1") is None
        largest = 8192 - record_size(len("order-2"), 0)
        assert cache.put("order-2", bytes(largest))
        assert cache.get("order-2") == bytes(largest)
    finally:
        cache.close()
        cache.unlink()


def test_mark_ready_is_seen_by_attached_handles(cache: SharedCache, name: str) -> None:
    reader = SharedCache.attach(name)
    try:
        assert not reader.stats().ready
        cache.mark_ready()
        assert reader.stats().ready
    finally:
        reader.close()


def test_stale_region_of_a_dead_owner_is_replaced(name: str) -> None:
    crashed = SharedCache.create(name, capacity=10, byte_budget=BIG_BUDGET)
    crashed.put("old", b"from the crashed run")
    orphan = SharedCache.attach(name)
    crashed.close()  # releases the owner lock but leaves the files, like a killed owner
    fresh = SharedCache.create(name, capacity=20, byte_budget=BIG_BUDGET)
    try:
        assert fresh.get("old") is None
        assert fresh.stats().capacity == 20
        orphan.put("ghost", b"written to the replaced region")
        assert fresh.get("ghost") is None
    finally:
        orphan.close()
        fresh.close()
        fresh.unlink()


def test_garbage_file_without_owner_is_replaced(name: str) -> None:
    (SHM / name).write_bytes(os.urandom(5000))
    cache = SharedCache.create(name, capacity=10, byte_budget=BIG_BUDGET)
    try:
        assert cache.put("k", b"v")
        assert cache.get("k") == b"v"
    finally:
        cache.close()
        cache.unlink()


def test_create_while_the_owner_lives_raises_cache_error_naming_the_region(
    cache: SharedCache, name: str
) -> None:
    with pytest.raises(CacheError, match=f"{name}.*live owner \\(pid {os.getpid()}\\)"):
        SharedCache.create(name, capacity=10, byte_budget=BIG_BUDGET)
    cache.put("k", b"still works")
    assert cache.get("k") == b"still works"


def test_attach_to_a_missing_region_raises_cache_error(name: str) -> None:
    with pytest.raises(CacheError, match=f"{name}.*does not exist"):
        SharedCache.attach(name)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "cannot map"), (b"x" * 4096, "bad magic"), (b"ORDRCACH" + bytes(200), "version")],
)
def test_attach_to_a_foreign_file_raises_cache_error(
    name: str, content: bytes, message: str
) -> None:
    (SHM / name).write_bytes(content)
    with pytest.raises(CacheError, match=message):
        SharedCache.attach(name)


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "a b", "x.owner", "é", "x" * 201])
def test_bad_region_names_are_rejected(bad: str) -> None:
    with pytest.raises(CacheError, match="invalid"):
        SharedCache.create(bad, capacity=10, byte_budget=BIG_BUDGET)
    with pytest.raises(CacheError, match="invalid"):
        SharedCache.attach(bad)


@pytest.mark.parametrize(("capacity", "budget"), [(0, BIG_BUDGET), (10, 100), (10, 1 << 41)])
def test_impossible_sizes_are_rejected(name: str, capacity: int, budget: int) -> None:
    with pytest.raises(CacheError, match=name):
        SharedCache.create(name, capacity=capacity, byte_budget=budget)
    assert not (SHM / name).exists()


def test_unlink_after_close_removes_the_files(name: str) -> None:
    cache = SharedCache.create(name, capacity=10, byte_budget=BIG_BUDGET)
    cache.close()
    cache.close()
    cache.unlink()
    assert not any(path.exists() for path in region_files(name))


def test_unlink_after_close_leaves_a_new_owners_region_alone(name: str) -> None:
    old = SharedCache.create(name, capacity=10, byte_budget=BIG_BUDGET)
    old.close()
    new = SharedCache.create(name, capacity=10, byte_budget=BIG_BUDGET)
    try:
        old.unlink()
        assert (SHM / name).exists()
    finally:
        new.close()
        new.unlink()


def test_only_the_owner_may_unlink(cache: SharedCache, name: str) -> None:
    reader = SharedCache.attach(name)
    try:
        with pytest.raises(CacheError, match="owner"):
            reader.unlink()
    finally:
        reader.close()


def test_readers_miss_while_a_writer_is_mid_update(cache: SharedCache, name: str) -> None:
    cache.put("k", b"v")
    seq = set_seq(name, 1001)
    assert cache.get("k") is None
    set_seq(name, seq)
    assert cache.get("k") == b"v"


def test_next_writer_clears_a_cache_left_mid_update_and_works(
    cache: SharedCache, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache.put_many((f"k{i}", b"v") for i in range(10))
    set_seq(name, 1001)
    assert cache.put("new", b"after recovery")
    assert "died in the middle of an update" in caplog.text
    assert cache.get("new") == b"after recovery"
    assert cache.get("k0") is None
    assert cache.stats().entries == 1


def test_entries_sharing_a_home_slot_stay_reachable_after_one_is_removed(name: str) -> None:
    cache = SharedCache.create(name, capacity=4, byte_budget=BIG_BUDGET)
    mask = slot_count_for(4) - 1
    home_of = {f"k{i}": zlib.crc32(f"k{i}".encode()) & mask for i in range(200)}
    same_home = [key for key, home in home_of.items() if home == home_of["k0"]][:3]
    next_home = next(k for k, home in home_of.items() if home == (home_of["k0"] + 1) & mask)
    try:
        for key in [*same_home, next_home]:
            cache.put(key, key.encode())
        cache.put(same_home[0], b"overwritten")  # removes the entry at the head of the run
        cache.put("extra", b"evicts the oldest")
        assert cache.get(same_home[1]) is None
        assert cache.get(same_home[2]) == same_home[2].encode()
        assert cache.get(next_home) == next_home.encode()
        assert cache.get(same_home[0]) == b"overwritten"
        assert cache.stats().entries == 4
    finally:
        cache.close()
        cache.unlink()


def test_readers_never_crash_on_garbage_in_the_index_and_log(cache: SharedCache, name: str) -> None:
    cache.put_many((f"k{i}", b"v" * i) for i in range(50))
    offsets = Offsets(slot_count_for(100), BIG_BUDGET)
    with open(SHM / name, "r+b") as file, mmap.mmap(file.fileno(), 0) as mm:
        mm[offsets.slot_ref : offsets.total] = os.urandom(offsets.total - offsets.slot_ref)
    for i in range(500):
        assert cache.get(f"k{i}") is None


def test_a_put_that_finds_the_region_corrupt_clears_it_and_the_next_put_works(
    cache: SharedCache, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache.put_many((f"k{i}", b"v") for i in range(10))
    with mapped(name) as mm:  # the oldest record's length zeroed, as a foreign write could
        log = Offsets(slot_count_for(100), BIG_BUDGET).log
        mm[log : log + 4] = bytes(4)
    # Runs of 32: 32 and 32 fit at the head; the third fills the capacity (100 entries) and
    # then must evict that record: it finds it corrupt, and the region is cleared; the last
    # run of 4 goes into the empty region.
    assert cache.put_many((f"n{i}", b"v" * 200) for i in range(100)) == 32 + 32 + 4
    assert "bad record length 0 at log offset 0" in caplog.text
    assert [cache.get(f"n{i}") for i in range(100)] == [None] * 96 + [b"v" * 200] * 4
    assert cache.get("k1") is None
    assert cache.stats().entries == 4
    assert set_seq(name, 0) % 2 == 0
    assert cache.put("after", b"recovery")
    assert cache.get("after") == b"recovery"


# ---- the native writer against the reference writer ----------------------------------------

WRITER_KEYS = [f"order-{i}".encode() for i in range(60)]
RUN_ITEMS = st.tuples(
    st.sampled_from(WRITER_KEYS),
    st.one_of(st.binary(max_size=200), st.binary(min_size=500, max_size=3000)),
)
# A step: a run put, then some keys read (setting their reference bits).
STEPS = st.lists(
    st.tuples(
        st.lists(RUN_ITEMS, max_size=40), st.lists(st.sampled_from(WRITER_KEYS), max_size=10)
    ),
    max_size=30,
)


@pytest.mark.parametrize(("capacity", "budget"), [(100, 1 << 20), (8, 4096), (30, 8192)])
@settings(max_examples=40, deadline=None, database=None)
@given(steps=STEPS)
def test_the_native_writer_leaves_the_bytes_the_reference_writer_leaves(
    capacity: int, budget: int, steps: list[tuple[list[tuple[bytes, bytes]], list[bytes]]]
) -> None:
    """Two regions of the same size: one written by the native writer, one by the reference
    model; reads set the same reference bits in both, so second chances are exercised. After
    every step the two regions hold the same bytes, but for the seq word, which only the native
    writer moves."""
    names = [f"test-cache-ref-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    native, model = (SharedCache.create(n, capacity=capacity, byte_budget=budget) for n in names)
    try:
        with mapped(names[0]) as native_mm, mapped(names[1]) as model_mm:
            views = Views(model_mm)
            reference = ReferenceWriter(views)
            seq = slice(SEQ_W * 8, SEQ_W * 8 + 8)
            try:
                for run, reads in steps:
                    assert native.put_encoded(run) == reference.put_run(run)
                    for key in reads:
                        assert native.get(key.decode()) == model.get(key.decode())
                    assert native_mm[: seq.start] == model_mm[: seq.start]
                    assert native_mm[seq.stop :] == model_mm[seq.stop :]
                    assert native.stats() == model.stats()
            finally:
                views.release()
    finally:
        for cache in (native, model):
            cache.close()
            cache.unlink()


# ---- model-based -------------------------------------------------------------------------

MODEL_BUDGET = 4096
KEYS = st.sampled_from([f"order-{i}" for i in range(40)])  # many share a home slot of 16
VALUES = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=300, max_size=2000),
    st.just(bytes(MODEL_BUDGET)),  # never fits
)


class CacheMatchesModel(RuleBasedStateMachine):
    """Every get returns None or exactly the last value stored for the key, and exactly what
    the pure-Python reference reader finds; the newest stored key is always present; entries
    and bytes stay within their limits."""

    def __init__(self) -> None:
        super().__init__()
        self.name = f"test-cache-model-{uuid.uuid4().hex[:12]}"
        self.owner = SharedCache.create(self.name, capacity=6, byte_budget=MODEL_BUDGET)
        self.reader = SharedCache.attach(self.name)
        self.file = open(SHM / self.name, "r+b")  # noqa: SIM115 -- closed in teardown
        self.mm = mmap.mmap(self.file.fileno(), 0)
        self.model: dict[str, bytes] = {}
        self.newest: str | None = None

    def store(self, key: str, value: bytes) -> bool:
        """The model's put: whether it fits, and the expected contents afterwards."""
        if record_size(len(key), len(value)) > MODEL_BUDGET:
            self.model.pop(key, None)
            self.newest = None if self.newest == key else self.newest
            return False
        self.model[key] = value
        self.newest = key
        return True

    @rule(key=KEYS, value=VALUES)
    def put(self, key: str, value: bytes) -> None:
        assert self.owner.put(key, value) == self.store(key, value)

    @rule(items=st.lists(st.tuples(KEYS, VALUES), max_size=8))
    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        expected = sum(self.store(key, value) for key, value in items)
        assert self.reader.put_many(items) == expected

    @rule(items=st.lists(st.tuples(KEYS, VALUES), max_size=8))
    def put_encoded(self, items: list[tuple[str, bytes]]) -> None:
        expected = sum(self.store(key, value) for key, value in items)
        encoded = [(key.encode(), memoryview(value)) for key, value in items]
        assert self.owner.put_encoded(encoded) == expected

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        got = self.reader.get(key)
        assert got is None or got == self.model.get(key)
        assert got == reference_get(self.mm, key)

    @rule()
    def entries_are_exactly_the_keys_that_hit(self) -> None:
        hits = sum(self.owner.get(key) is not None for key in self.model)
        assert self.owner.stats().entries == hits

    @invariant()
    def within_limits(self) -> None:
        stats = self.reader.stats()
        assert stats.entries <= stats.capacity == 6
        assert stats.bytes_used <= stats.byte_budget == MODEL_BUDGET

    @invariant()
    def newest_key_is_present(self) -> None:
        if self.newest is not None:
            assert self.reader.get(self.newest) == self.model[self.newest]

    def teardown(self) -> None:
        self.mm.close()
        self.file.close()
        self.reader.close()
        self.owner.close()
        self.owner.unlink()
        remove_region_files(self.name)


CacheMatchesModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, database=None
)
test_cache_matches_a_reference_model = CacheMatchesModel.TestCase
