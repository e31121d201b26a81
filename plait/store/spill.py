"""Spilling: copy an object's bytes from the arena to a file and back, checked by CRC-32.

One file per object in the node's spill directory (``plait-<session>-<node>``), written
with positioned writes from the arena by a few threads and read back the same way straight
into the arena block. A CRC-32 per 16 MiB chunk (zlib, ~1.9 GB/s per thread here) is kept
in memory, so a file that was truncated, altered or removed is detected on restore and
reported as ObjectCorruptedError / ObjectLostError, never returned as data.

The same files serve what the store cannot hold (Ray's fallback allocation): a reader the
store has no room for maps a spill file read-only (``mapped``, its CRCs checked first), and
an object larger than the whole store is written straight into a file of this directory by
its writer, a driver or a worker (``write_on_disk``), and mapped from there.

``first_chunk_written`` (object id) is called once the first chunk of each file is on disk:
the executor's ``mid-spill`` kill point, handed in because the store may not import the
executor (None, the default, costs nothing).
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from plait.errors import ObjectCorruptedError, ObjectLostError, ObjectStoreFullError

log = logging.getLogger("plait.store")

CHUNK = 16 << 20
SPILL_THREADS = 4
_threads: ThreadPoolExecutor | None = None


@dataclass(frozen=True, slots=True)
class SpillRecord:
    path: str
    nbytes: int
    crc: tuple[int, ...]          # CRC-32 of each CHUNK, in order


class SpillError(OSError):
    """Writing a spill file failed (directory read-only, disk full): nothing was lost."""


class Spiller:
    """Writes and reads spill files in one directory, and keeps throughput figures."""

    def __init__(self, directory: str,
                 first_chunk_written: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self.first_chunk_written = first_chunk_written
        self.spilled_bytes = self.spill_seconds = 0.0
        self.restored_bytes = self.restore_seconds = 0.0

    def path(self, object_id: str) -> str:
        return os.path.join(self.directory, object_id.replace("/", "_") + ".bin")

    def new_file(self, object_id: str) -> str:
        """The path an object the store cannot hold is written to by its writer (another
        process: ``write_on_disk``), in this directory, which is made if need be."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as error:
            raise SpillError(error.errno, f"cannot spill to {self.directory}: "
                                          f"{error.strerror or error}") from error
        return self.path(object_id)

    def write(self, object_id: str, data: memoryview) -> SpillRecord:
        start = time.perf_counter()
        path = self.path(object_id)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            crc = _write_file(path, data, self.chunk_hook(object_id))
        except OSError as error:
            _remove(path)
            raise SpillError(error.errno, f"cannot spill to {self.directory}: "
                                          f"{error.strerror or error}") from error
        seconds = time.perf_counter() - start
        self.spilled_bytes += data.nbytes
        self.spill_seconds += seconds
        log.info("spilled %s: %d bytes in %.3f s (%.2f GB/s)", object_id, data.nbytes,
                 seconds, data.nbytes / max(seconds, 1e-9) / 1e9)
        return SpillRecord(path, data.nbytes, crc)

    def chunk_hook(self, object_id: str) -> Callable[[], None] | None:
        hook = self.first_chunk_written
        return None if hook is None else lambda: hook(object_id)

    def read_into(self, object_id: str, record: SpillRecord, target: memoryview) -> None:
        """Restore into ``target``; a missing or altered file is an error, not data."""
        start = time.perf_counter()
        try:
            crc = _read_file(record.path, target[:record.nbytes])
        except OSError as error:
            raise _lost(object_id, record, error) from None
        _check(object_id, record, crc)
        seconds = time.perf_counter() - start
        self.restored_bytes += record.nbytes
        self.restore_seconds += seconds
        log.info("restored %s: %d bytes in %.3f s (%.2f GB/s)", object_id, record.nbytes,
                 seconds, record.nbytes / max(seconds, 1e-9) / 1e9)

    def delete(self, record: SpillRecord) -> None:
        _remove(record.path)

    def remove_directory(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def write_on_disk(object_id: str, path: str, nbytes: int, fill: Callable[[memoryview], None]
                  ) -> tuple[int, ...]:
    """Write an object its store cannot hold into the file its node named (``new_file``):
    ``fill`` lays it out into the mapped file; the CRC-32 of each CHUNK, for ``seal``. A
    disk that cannot take it (full, read-only) is ObjectStoreFullError, saying which."""
    block = DiskBlock(object_id, path, nbytes)
    try:
        fill(block.view)
        return block.crcs()
    finally:
        block.close()


class DiskBlock:
    """A new file of the spill directory, its ``nbytes`` reserved on disk (a full disk
    fails now, not with SIGBUS mid-copy) and mapped for writing: where an object its store
    cannot hold is written, by its writer (``write_on_disk``) or as a copy from another
    node (transfers.py), as a block of the arena is. ObjectStoreFullError if the disk
    cannot take it."""

    def __init__(self, object_id: str, path: str, nbytes: int) -> None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except OSError as error:
            raise _not_written(object_id, path, nbytes, error) from error
        try:
            os.posix_fallocate(fd, 0, nbytes)
            self.mapping = mmap.mmap(fd, nbytes)
        except OSError as error:
            _remove(path)
            raise _not_written(object_id, path, nbytes, error) from error
        finally:
            os.close(fd)
        self.view = memoryview(self.mapping)

    def crcs(self) -> tuple[int, ...]:
        """The CRC-32 of each CHUNK written, for the store's record (``seal``)."""
        return _chunk_crcs(self.view)

    def close(self) -> None:
        """Unmap (the file stays); a view still held elsewhere (a copy's thread) keeps the
        mapping until it goes."""
        try:
            self.view.release()
            self.mapping.close()
        except BufferError:
            pass


def _not_written(object_id: str, path: str, nbytes: int, error: OSError
                 ) -> ObjectStoreFullError:
    return ObjectStoreFullError(f"{object_id} ({nbytes} bytes, more than its store can hold) "
                                f"cannot be written to {path}: {error.strerror or error}")


def mapped(object_id: str, record: SpillRecord, checked: bool = True) -> memoryview:
    """A spill file mapped read-only into this process (a reader its node's store had no
    room for reads it in place, as Ray maps its fallback files), once its CRCs are checked
    (``checked``; False: its holder checked them just now): ObjectLostError if it is gone,
    ObjectCorruptedError if truncated or altered. The file never changes while the object
    lives, and the mapping outlives its deletion."""
    try:
        fd = os.open(record.path, os.O_RDONLY)
    except OSError as error:
        raise _lost(object_id, record, error) from None
    try:
        if os.fstat(fd).st_size != record.nbytes:
            raise ObjectCorruptedError(object_id, f"its spill file {record.path} was "
                                                  f"truncated or grown")
        view = memoryview(mmap.mmap(fd, record.nbytes, access=mmap.ACCESS_READ))
    finally:
        os.close(fd)
    if checked:
        _check(object_id, record, _chunk_crcs(view))
    return view


def _lost(object_id: str, record: SpillRecord, error: OSError) -> ObjectLostError:
    """A spill file that cannot be opened or read: its object's copy is gone."""
    if isinstance(error, FileNotFoundError):
        return ObjectLostError(object_id, f"its spill file {record.path} is gone")
    return ObjectLostError(object_id, f"its spill file cannot be read: {error}")


def _check(object_id: str, record: SpillRecord, crc: tuple[int, ...]) -> None:
    """A file whose chunks' CRC-32s differ from its record's is an error, never data."""
    if crc != record.crc:
        raise ObjectCorruptedError(object_id, f"its spill file {record.path} fails its "
                                              f"checksum (corrupted on disk)")


def _chunk_crcs(view: memoryview) -> tuple[int, ...]:
    """The CRC-32 of each CHUNK of ``view``, from several threads (zlib releases the GIL)."""
    return tuple(_pool().map(lambda at: zlib.crc32(view[at:at + CHUNK]),
                             range(0, view.nbytes, CHUNK)))


def spill_directory(session: str, node: str, base: str | None = None) -> str:
    """Where a node spills: ``<base or the temp dir>/plait-<session>-<node>-spill``.

    One name, so whoever cleans up after a node that died (its driver, the head,
    ``plait stop``) finds the directory without asking the node.
    """
    import tempfile

    return os.path.join(os.path.abspath(base or tempfile.gettempdir()),
                        f"plait-{session}-{node}-spill")


def _write_file(path: str, data: memoryview,
                after_first: Callable[[], None] | None = None) -> tuple[int, ...]:
    """Write ``data`` with positioned writes from several threads; per-chunk CRC-32s.

    The first write of a spill file is bound by the kernel allocating page-cache pages,
    which goes faster from several threads; os.pwrite and zlib.crc32 release the GIL.
    """
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.ftruncate(fd, data.nbytes)
        return tuple(_pool().map(
            lambda start: _write_chunk(fd, data, start, after_first if start == 0 else None),
            range(0, data.nbytes, CHUNK)))
    finally:
        os.close(fd)


def _write_chunk(fd: int, data: memoryview, start: int,
                 after: Callable[[], None] | None = None) -> int:
    chunk = data[start:start + CHUNK]
    written = 0
    while written < chunk.nbytes:
        written += os.pwrite(fd, chunk[written:], start + written)
    if after is not None:
        after()
    return zlib.crc32(chunk)


def _read_file(path: str, target: memoryview) -> tuple[int, ...]:
    """Read back into ``target`` from several threads; the CRC-32 of each chunk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size != target.nbytes:
            return (-1,)                      # truncated or grown: can match no record
        return tuple(_pool().map(lambda start: _read_chunk(fd, target, start),
                                 range(0, target.nbytes, CHUNK)))
    finally:
        os.close(fd)


def _read_chunk(fd: int, target: memoryview, start: int) -> int:
    chunk = target[start:start + CHUNK]
    got = 0
    while got < chunk.nbytes:
        n = os.preadv(fd, [chunk[got:]], start + got)
        if n == 0:
            return -1
        got += n
    return zlib.crc32(chunk)


def _pool() -> ThreadPoolExecutor:
    global _threads
    if _threads is None:
        _threads = ThreadPoolExecutor(SPILL_THREADS, thread_name_prefix="plait-spill")
    return _threads


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:       # already gone, or its directory never existed
        pass
