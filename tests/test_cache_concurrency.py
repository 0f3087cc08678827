"""The shared cache across processes: readers racing a constantly evicting writer only ever
see values that were written for the key they asked for, and readers or writers killed with
SIGKILL at any moment leave a cache that keeps working.

Every value carries its key, a version and a CRC32, so a reader can tell a value that was
really written for its key from a torn or misplaced one. Outcomes never depend on timing:
how many reads hit varies from run to run, but every one of them must be valid.
"""

import mmap
import multiprocessing
import os
import random
import signal
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from service.cache import SharedCache
from service.cache.layout import HEADER_SIZE, SEQ_W
from service.errors import CacheError

pytestmark = pytest.mark.slow

SHM = Path("/dev/shm")
SPAWN = multiprocessing.get_context("spawn")
KEYS = [f"order-{i:05d}" for i in range(800)]
CAPACITY = 256
BUDGET = 256 * 1024  # about 170 values of the average size: bytes and count both evict
STRESS_SECONDS = 3.0
READERS = 4
KILL_ROUNDS = 6
JOIN_TIMEOUT_S = 30.0


def make_value(key: str, version: int, size: int) -> bytes:
    head = f"{key}|{version}|".encode()
    body = (head * (size // len(head) + 1))[: max(size, len(head))]
    return body + zlib.crc32(body).to_bytes(4, "little")


def is_valid(key: str, value: bytes) -> bool:
    body, check = value[:-4], value[-4:]
    return zlib.crc32(body).to_bytes(4, "little") == check and body.startswith(f"{key}|".encode())


def seq_is_odd(name: str) -> bool:
    with (
        open(SHM / name, "rb") as file,
        mmap.mmap(file.fileno(), HEADER_SIZE, prot=mmap.PROT_READ) as mm,
    ):
        words = memoryview(mm).cast("Q")
        odd = bool(words[SEQ_W] & 1)
        words.release()
    return odd


# ---- child processes (spawned: module-level functions) ------------------------------------


def write_for(name: str, seconds: float, seed: int, conn: Connection) -> None:
    """Put random keys (sometimes in batches) until time is up; report puts made."""
    cache, rng = SharedCache.attach(name), random.Random(seed)
    version, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        version += 1
        if version % 10:
            key = rng.choice(KEYS)
            cache.put(key, make_value(key, version, rng.randrange(100, 3000)))
        else:
            keys = rng.sample(KEYS, 8)
            cache.put_many(
                (key, make_value(key, version, rng.randrange(100, 3000))) for key in keys
            )
    conn.send({"puts": version})
    cache.close()


def read_for(name: str, seconds: float, seed: int, conn: Connection) -> None:
    """Get random keys until time is up or the parent says stop; report what was seen."""
    cache, rng = SharedCache.attach(name), random.Random(seed)
    counts = {"hits": 0, "misses": 0, "invalid": 0}
    deadline = time.monotonic() + seconds
    for reads in range(1, 1 << 62):
        key = rng.choice(KEYS)
        value = cache.get(key)
        if value is None:
            counts["misses"] += 1
        elif is_valid(key, value):
            counts["hits"] += 1
        else:
            counts["invalid"] += 1
        if reads == 1000:
            conn.send("reading")
        if reads % 256 == 0 and (deadline <= time.monotonic() or conn.poll()):
            break
    conn.send(counts)
    cache.close()


def write_forever(name: str, seed: int, conn: Connection) -> None:
    """Put in a tight loop until killed; says when it has started writing."""
    cache, rng = SharedCache.attach(name), random.Random(seed)
    version = 0
    while True:
        version += 1
        key = rng.choice(KEYS)
        cache.put(key, make_value(key, version, rng.randrange(100, 3000)))
        if version == 500:
            conn.send("writing")


def own_until_killed(name: str, conn: Connection) -> None:
    """Create the region, store something, and hold it until killed like a crashing owner."""
    cache = SharedCache.create(name, capacity=CAPACITY, byte_budget=BUDGET)
    cache.put("order-old", b"from the crashed run")
    conn.send("owning")
    while True:
        time.sleep(1)


# ---- parent side ---------------------------------------------------------------------------


@pytest.fixture
def name() -> Iterator[str]:
    region = f"test-cache-mp-{uuid.uuid4().hex[:12]}"
    yield region
    for path in (SHM / region, SHM / f"{region}.owner", SHM / f".{region}.tmp"):
        path.unlink(missing_ok=True)


@pytest.fixture
def cache(name: str) -> Iterator[SharedCache]:
    owner = SharedCache.create(name, capacity=CAPACITY, byte_budget=BUDGET)
    yield owner
    owner.close()
    owner.unlink()


class Child:
    """A spawned process with the parent's end of a pipe to it; always reaped."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child_conn = SPAWN.Pipe()
        self.process = SPAWN.Process(target=target, args=(*args, child_conn), daemon=True)
        self.process.start()
        child_conn.close()

    def receive(self) -> Any:
        if not self.conn.poll(JOIN_TIMEOUT_S):
            raise TimeoutError(f"no word from {self.process.name}")
        return self.conn.recv()

    def finish(self) -> Any:
        """The child's last message (earlier progress notes skipped), after it exited."""
        result = self.receive()
        while isinstance(result, str):
            result = self.receive()
        self.process.join(JOIN_TIMEOUT_S)
        assert self.process.exitcode == 0
        return result

    def kill(self) -> None:
        self.process.kill()
        self.process.join(JOIN_TIMEOUT_S)

    def close(self) -> None:
        if self.process.is_alive():
            self.kill()
        self.process.close()
        self.conn.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.close()


def stopped(pid: int) -> bool:
    """Whether the process is in the stopped state (SIGSTOP is delivered asynchronously)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def freeze_mid_update(writer: Child, name: str, tries: int = 100_000) -> int:
    """Stop the writer with SIGSTOP until it is caught inside an update (seqlock odd), letting
    it run on whenever it was caught between two; return how many freezes it took."""
    pid = writer.process.pid
    assert pid is not None
    for attempt in range(1, tries + 1):
        os.kill(pid, signal.SIGSTOP)
        while not stopped(pid):
            time.sleep(0)
        if seq_is_odd(name):
            return attempt
        os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"the writer was never caught mid-update in {tries} freezes")


def assert_every_value_valid(cache: SharedCache) -> int:
    values = {key: cache.get(key) for key in KEYS}
    assert all(value is None or is_valid(key, value) for key, value in values.items())
    return sum(value is not None for value in values.values())


def assert_writes_work(cache: SharedCache) -> None:
    value = make_value("order-check", 0, 1500)
    assert cache.put("order-check", value)
    assert cache.get("order-check") == value


def test_readers_racing_an_evicting_writer_only_see_values_written_for_their_key(
    cache: SharedCache, name: str, children: list[Child]
) -> None:
    children.append(Child(write_for, name, STRESS_SECONDS, 1))
    children.extend(Child(read_for, name, STRESS_SECONDS, 100 + i) for i in range(READERS))
    puts = children[0].finish()["puts"]
    reads = [child.finish() for child in children[1:]]
    totals = {kind: sum(read[kind] for read in reads) for kind in ("hits", "misses", "invalid")}
    stats = cache.stats()
    print(f"\nstress: {puts} puts, {stats.evictions} evictions, {READERS} readers: {totals}")
    assert totals["invalid"] == 0
    assert totals["hits"] + totals["misses"] >= READERS
    assert stats.entries <= CAPACITY
    assert stats.bytes_used <= BUDGET
    assert_every_value_valid(cache)


def test_a_reader_killed_mid_reads_leaves_the_cache_working(
    cache: SharedCache, name: str, children: list[Child]
) -> None:
    cache.put_many((key, make_value(key, 1, 2000)) for key in KEYS[:100])
    reader = Child(read_for, name, 60.0, 7)
    children.append(reader)
    assert reader.receive() == "reading"
    reader.kill()
    assert reader.process.exitcode == -9
    assert_every_value_valid(cache)
    assert_writes_work(cache)
    other = SharedCache.attach(name)
    try:
        assert other.get("order-check") is not None
    finally:
        other.close()


def test_a_writer_killed_mid_write_leaves_the_cache_usable_and_the_next_writer_recovers(
    cache: SharedCache, name: str, children: list[Child]
) -> None:
    reader = Child(read_for, name, 60.0, 9)  # reads through every kill and recovery
    children.append(reader)
    assert reader.receive() == "reading"
    freezes = 0
    for round_ in range(KILL_ROUNDS):
        writer = Child(write_forever, name, round_)
        children.append(writer)
        assert writer.receive() == "writing"
        freezes += freeze_mid_update(writer, name)
        writer.kill()
        assert writer.process.exitcode == -9
        assert_every_value_valid(cache)
        assert_writes_work(cache)
        assert not seq_is_odd(name)
    reader.conn.send("stop")
    reads = reader.finish()
    print(f"\nwriter killed mid-update {KILL_ROUNDS} times ({freezes} freezes); reader: {reads}")
    assert reads["invalid"] == 0


def test_an_owner_killed_with_sigkill_leaves_a_stale_region_that_create_replaces(
    name: str, children: list[Child]
) -> None:
    owner = Child(own_until_killed, name)
    children.append(owner)
    assert owner.receive() == "owning"
    with pytest.raises(CacheError, match=f"{name}.*live owner \\(pid {owner.process.pid}\\)"):
        SharedCache.create(name, capacity=CAPACITY, byte_budget=BUDGET)
    owner.kill()
    assert (SHM / name).exists()
    cache = SharedCache.create(name, capacity=CAPACITY, byte_budget=BUDGET)
    try:
        assert cache.get("order-old") is None
        assert_writes_work(cache)
    finally:
        cache.close()
        cache.unlink()
