"""The files behind a cache region: naming, the owner lock, building, mapping and removing.

A region is the file `/dev/shm/<name>` mapped with `mmap`, plus `/dev/shm/<name>.owner`, on
which the owning process holds an exclusive `flock` for its lifetime. `multiprocessing.
shared_memory` is not used: its resource tracker unlinks segments that other processes merely
attached to when they exit (bpo-39959).

Why flock: the kernel drops it when the holder dies, however it dies, so a crashed owner can
never leave a region that looks owned. A region file without a locked owner file is therefore
stale (left by a crashed run) and `create` replaces it. A new region is built under a hidden
temporary name and renamed into place, so `attach` sees either no region, the old one, or a
complete new one, never a half-initialised file; processes still mapping a replaced region keep
their (now nameless) copy and cannot disturb the new one. The file is fully allocated up front:
writing into a sparse page of a full tmpfs would kill the writer with SIGBUS, while an
allocation failure here is an ordinary `CacheError` at start-up.
"""

import fcntl
import logging
import mmap
import os
from pathlib import Path

from service.cache.layout import (
    BUDGET_W,
    CAPACITY_W,
    HEADER_SIZE,
    MAGIC,
    MAGIC_W,
    OWNER_SUFFIX,
    SLOT_COUNT_W,
    VERSION,
    VERSION_W,
    Offsets,
    header_is_sane,
    is_valid_name,
    slot_count_for,
)
from service.errors import CacheError

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
_OWNER_LOCK_TRIES = 3


def region_path(name: str) -> Path:
    """The region file for `name`, after checking the name is a safe plain file name."""
    if not is_valid_name(name):
        raise CacheError(
            f"cache region name {name!r} is invalid: use 1-200 of [A-Za-z0-9_.-], "
            f"not starting with '.' nor ending with {OWNER_SUFFIX!r}"
        )
    return SHM_DIR / name


def owner_path(name: str) -> Path:
    return SHM_DIR / f"{name}{OWNER_SUFFIX}"


def _owner_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _try_lock_owner(name: str) -> int | None:
    """An fd holding the owner lock of `name`, or None while another live process holds it.

    The owner file may be unlinked by a finishing owner between our open and our flock; a lock
    on an unlinked file excludes nobody, so after locking we check the path still names the
    file we locked, and otherwise start again on the file now there.
    """
    path = owner_path(name)
    for _ in range(_OWNER_LOCK_TRIES):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd
        os.close(fd)
    raise CacheError(f"cache region {name!r}: its owner file keeps being replaced")


def lock_owner(name: str) -> int:
    """Take the owner lock of `name` and record our pid in it; CacheError if it is held."""
    region_path(name)
    try:
        fd = _try_lock_owner(name)
        if fd is None:
            with open(owner_path(name), "rb") as holder:
                pid = _owner_pid(holder.fileno())
            raise CacheError(f"cache region {name!r} is in use by a live owner (pid {pid})")
    except OSError as exc:
        raise CacheError(f"cache region {name!r}: cannot take the owner lock: {exc}") from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError as exc:
        os.close(fd)
        raise CacheError(f"cache region {name!r}: cannot write the owner file: {exc}") from exc
    return fd


def relock_owner(name: str) -> int | None:
    """The owner lock of `name` if no live process holds it (for unlink after close)."""
    try:
        return _try_lock_owner(name)
    except OSError as exc:
        raise CacheError(f"cache region {name!r}: cannot take the owner lock: {exc}") from exc


def _write_header(mm: mmap.mmap, capacity: int, slot_count: int, budget: int) -> None:
    words = memoryview(mm)[:HEADER_SIZE].cast("Q")
    try:
        words[VERSION_W] = VERSION
        words[CAPACITY_W] = capacity
        words[SLOT_COUNT_W] = slot_count
        words[BUDGET_W] = budget
    finally:
        words.release()
    mm[MAGIC_W * 8 : MAGIC_W * 8 + len(MAGIC)] = MAGIC


def build_region(name: str, capacity: int, budget: int) -> tuple[int, mmap.mmap]:
    """A new, empty region file for `name` (the caller holds the owner lock), mapped."""
    path = region_path(name)
    if path.exists():
        log.warning("cache region %r: replacing the stale region of a dead owner", name)
    slot_count = slot_count_for(capacity)
    size = Offsets(slot_count, budget).total
    # The owner lock makes us the only creator of this name, so a fixed temporary name is safe.
    tmp = path.with_name(f".{name}.tmp")
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CacheError(f"cache region {name!r}: cannot create {tmp}: {exc}") from exc
    mm: mmap.mmap | None = None
    try:
        os.posix_fallocate(fd, 0, size)
        mm = mmap.mmap(fd, size)
        _write_header(mm, capacity, slot_count, budget)
        os.rename(tmp, path)
    except OSError as exc:
        if mm is not None:
            mm.close()
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise CacheError(f"cache region {name!r}: cannot build {size} bytes: {exc}") from exc
    return fd, mm


def _check_header(name: str, mm: mmap.mmap) -> None:
    if len(mm) < HEADER_SIZE or mm[: len(MAGIC)] != MAGIC:
        raise CacheError(f"cache region {name!r} is not an order cache (bad magic)")
    words = memoryview(mm)[:HEADER_SIZE].cast("Q")
    try:
        version, capacity = words[VERSION_W], words[CAPACITY_W]
        slot_count, budget = words[SLOT_COUNT_W], words[BUDGET_W]
    finally:
        words.release()
    if version != VERSION:
        raise CacheError(f"cache region {name!r} has layout version {version}, not {VERSION}")
    if not header_is_sane(capacity, slot_count, budget):
        raise CacheError(f"cache region {name!r} has a corrupt header")
    if Offsets(slot_count, budget).total != len(mm):
        raise CacheError(f"cache region {name!r} has the wrong size ({len(mm)} bytes)")


def open_region(name: str) -> tuple[int, mmap.mmap]:
    """The existing region of `name`, mapped after checking its magic, version and size."""
    path = region_path(name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CacheError(f"cache region {name!r} does not exist ({path})") from None
    except OSError as exc:
        raise CacheError(f"cache region {name!r}: cannot open {path}: {exc}") from exc
    try:
        mm = mmap.mmap(fd, 0)  # 0: the whole file, whatever its size
    except (OSError, ValueError) as exc:  # ValueError: an empty file
        os.close(fd)
        raise CacheError(f"cache region {name!r}: cannot map {path}: {exc}") from exc
    try:
        _check_header(name, mm)
    except BaseException:
        mm.close()
        os.close(fd)
        raise
    return fd, mm


def remove_files(name: str) -> None:
    """Remove the region file, then its owner file (whose lock the caller holds)."""
    region_path(name).unlink(missing_ok=True)
    owner_path(name).unlink(missing_ok=True)
