"""Arena: one node's shared memory, a file in /dev/shm that every process of the node maps.

The node process creates it (``create``) and is the only one to ``unlink`` it; drivers and
workers ``attach``. We use ``os.open`` + ``mmap`` rather than
``multiprocessing.shared_memory`` because on Python 3.11 the resource tracker unlinks
segments a process merely attached to (cpython#82300).

The file is sized with ftruncate and left sparse, so start-up stays fast and an idle
cluster holds no store memory. The node reserves (posix_fallocate) each block's pages when
it allocates the block, before anyone writes: a full /dev/shm is then an error at put,
never a SIGBUS in the middle of a copy.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field

from plait.errors import ClusterError

SHM_DIR = "/dev/shm"
SEGMENT_PREFIX = "plait-"
# madvise(MADV_POPULATE_WRITE): fault a range in with one call, ~3x faster than touching
# each page from Python-driven copies (Linux >= 5.14; ignored where unsupported).
_MADV_POPULATE_WRITE = 23
POPULATE_MIN_BYTES = 4 << 20
WARM_CHUNK = 2 << 20       # granularity at which a process remembers pages it has mapped


@dataclass
class Arena:
    """A mapped arena; ``view`` is a writable memoryview of the whole of it."""

    name: str
    capacity: int
    _map: mmap.mmap
    view: memoryview
    _fd: int | None = None                              # kept open by the creator only
    _warm: bytearray = field(init=False, repr=False)   # 1 per WARM_CHUNK this process faulted
    _reserved: bytearray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._warm = bytearray(self.capacity // WARM_CHUNK + 1)
        self._reserved = bytearray(self.capacity // WARM_CHUNK + 1)

    @property
    def path(self) -> str:
        return os.path.join(SHM_DIR, self.name)

    @classmethod
    def create(cls, name: str, capacity: int) -> Arena:
        assert name.startswith(SEGMENT_PREFIX), name
        fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, capacity)
            arena = cls._map_fd(name, fd, capacity)
        except BaseException:
            os.close(fd)
            os.unlink(os.path.join(SHM_DIR, name))
            raise
        arena._fd = fd
        return arena

    @classmethod
    def attach(cls, name: str) -> Arena:
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        try:
            return cls._map_fd(name, fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    @classmethod
    def _map_fd(cls, name: str, fd: int, capacity: int) -> Arena:
        mapping = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(name, capacity, mapping, memoryview(mapping))

    def reserve(self, offset: int, nbytes: int) -> None:
        """Back a block with real tmpfs pages now (OSError ENOSPC if /dev/shm is full)."""
        assert self._fd is not None, "only the node that created the arena reserves"
        first, last = offset // WARM_CHUNK, (offset + max(nbytes, 1) - 1) // WARM_CHUNK
        for start, stop in _runs([c for c in range(first, last + 1) if not self._reserved[c]]):
            begin = start * WARM_CHUNK
            os.posix_fallocate(self._fd, begin, min(stop * WARM_CHUNK, self.capacity) - begin)
            self._reserved[start:stop] = b"\x01" * (stop - start)

    def block(self, offset: int, nbytes: int) -> memoryview:
        return self.view[offset:offset + nbytes]

    def prefault(self, offset: int, nbytes: int) -> None:
        """Fault a block's pages into this process before a large write (best effort).

        Chunks this process already faulted are skipped: the arena's pages are reused, so
        after warm-up a put pays for the copy alone.
        """
        if nbytes < POPULATE_MIN_BYTES:
            return
        first, last = offset // WARM_CHUNK, (offset + nbytes - 1) // WARM_CHUNK
        cold = [c for c in range(first, last + 1) if not self._warm[c]]
        for start, stop in _runs(cold):
            begin = max(start * WARM_CHUNK, offset - offset % mmap.PAGESIZE)
            end = min(stop * WARM_CHUNK, offset + nbytes)
            try:
                self._map.madvise(_MADV_POPULATE_WRITE, begin, end - begin)
            except OSError:
                return
            self._warm[start:stop] = b"\x01" * (stop - start)

    def close(self) -> None:
        """Unmap this process's view; BufferError (and still mapped) while views exist."""
        self.view.release()
        try:
            self._map.close()
        except BufferError:
            self.view = memoryview(self._map)     # stay usable: zero-copy views remain
            raise
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def unlink(self) -> None:
        """Remove the segment (the node process does this once, at shutdown)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _runs(chunks: list[int]) -> list[tuple[int, int]]:
    """Sorted chunk numbers as half-open runs.

    >>> _runs([1, 2, 3, 7, 9, 10])
    [(1, 4), (7, 8), (9, 11)]
    """
    runs: list[tuple[int, int]] = []
    for chunk in chunks:
        if runs and runs[-1][1] == chunk:
            runs[-1] = (runs[-1][0], chunk + 1)
        else:
            runs.append((chunk, chunk + 1))
    return runs


MIN_CAPACITY = 1 << 20


def checked_capacity(requested: int) -> int:
    """A store size asked for (``plait.init(store_memory=)``, ``plait start
    --store-memory``), if this host's /dev/shm can hold it."""
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < MIN_CAPACITY:
        raise ValueError(f"store_memory must be a number of bytes >= 1 MiB, got {requested!r}")
    shm = os.statvfs(SHM_DIR)
    free = shm.f_bavail * shm.f_frsize
    if requested > free:
        raise ClusterError(f"store_memory={requested} bytes does not fit: {SHM_DIR} has only "
                           f"{free} bytes free")
    return requested


def default_capacity() -> int:
    """A store's default size: 30% of RAM (Ray's default), at most 80% of free /dev/shm."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shm = os.statvfs(SHM_DIR)
    return int(min(0.3 * total, 0.8 * shm.f_bavail * shm.f_frsize))
