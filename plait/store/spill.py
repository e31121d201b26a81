"""Spilling: copy an object's bytes from the arena to a file and back, checked by CRC-32.

One file per object in the node's spill directory (``plait-<session>-<node>``), written
with plain ``os.write`` from the arena (the page cache takes it at several GB/s) and read
back with ``readv`` straight into the arena block. The CRC-32 (zlib, ~1.9 GB/s here) is
kept in memory, so a file that was truncated, altered or removed is detected on restore and
reported as ObjectCorruptedError / ObjectLostError, never returned as data.
"""

from __future__ import annotations

import os
import shutil
import time
import zlib
from dataclasses import dataclass

from plait.errors import ObjectCorruptedError, ObjectLostError

CHUNK = 16 << 20


@dataclass(frozen=True, slots=True)
class SpillRecord:
    path: str
    nbytes: int
    crc: int


class SpillError(OSError):
    """Writing a spill file failed (directory read-only, disk full): nothing was lost."""


class Spiller:
    """Writes and reads spill files in one directory, and keeps throughput figures."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.spilled_bytes = self.spill_seconds = 0.0
        self.restored_bytes = self.restore_seconds = 0.0

    def write(self, object_id: str, data: memoryview) -> SpillRecord:
        start = time.perf_counter()
        path = os.path.join(self.directory, object_id.replace("/", "_") + ".bin")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            crc = _write_file(path, data)
        except OSError as error:
            _remove(path)
            raise SpillError(error.errno, f"cannot spill to {self.directory}: "
                                          f"{error.strerror or error}") from error
        self.spilled_bytes += data.nbytes
        self.spill_seconds += time.perf_counter() - start
        return SpillRecord(path, data.nbytes, crc)

    def read_into(self, object_id: str, record: SpillRecord, target: memoryview) -> None:
        """Restore into ``target``; a missing or altered file is an error, not data."""
        start = time.perf_counter()
        try:
            crc = _read_file(record.path, target[:record.nbytes])
        except FileNotFoundError:
            raise ObjectLostError(object_id, f"its spill file {record.path} is gone") from None
        except OSError as error:
            raise ObjectLostError(object_id, f"its spill file cannot be read: {error}") from error
        if crc != record.crc:
            raise ObjectCorruptedError(object_id, f"its spill file {record.path} fails its "
                                                  f"checksum (corrupted on disk)")
        self.restored_bytes += record.nbytes
        self.restore_seconds += time.perf_counter() - start

    def delete(self, record: SpillRecord) -> None:
        _remove(record.path)

    def remove_directory(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_file(path: str, data: memoryview) -> int:
    crc = 0
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        for offset in range(0, data.nbytes, CHUNK):
            chunk = data[offset:offset + CHUNK]
            crc = zlib.crc32(chunk, crc)
            written = 0
            while written < chunk.nbytes:
                written += os.write(fd, chunk[written:])
    finally:
        os.close(fd)
    return crc


def _read_file(path: str, target: memoryview) -> int:
    crc = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in range(0, target.nbytes, CHUNK):
            chunk = target[offset:offset + CHUNK]
            got = 0
            while got < chunk.nbytes:
                n = os.readv(fd, [chunk[got:]])
                if n == 0:
                    return -1          # truncated: can match no CRC-32
                got += n
            crc = zlib.crc32(chunk, crc)
    finally:
        os.close(fd)
    return crc


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:       # already gone, or its directory never existed
        pass
