"""Files of a backup: copied with their holes kept, hashed, walked, made durable.

A shard's files are mostly holes: the WAL and the vector chunks are preallocated (32 MiB each
at any size), so a store of 300 points takes 0.6 MB on disk and 166 MB read byte by byte.
Copying only the data regions (``SEEK_DATA``/``SEEK_HOLE``) keeps the backup as small as the
store; the sha256 is still that of the whole content, holes read as zeros, so
``sha256sum`` on the backup's files gives the same digests.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ingest.errors import BackupError
from ingest.store.edge_shards import fsync_dir

_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_CHUNK))

Progress = Callable[[int], object]  # called with each number of bytes done (tqdm.update)


def _data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the parts of a file that hold data; between them are holes (zeros)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole up to the end
                return
            if exc.errno == errno.EINVAL:  # a file system without hole reporting
                yield offset, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


def _hash_zeros(digest: hashlib._Hash, length: int) -> None:
    while length > 0:
        step = min(length, _CHUNK)
        digest.update(_ZEROS[:step])
        length -= step


def _stream(source: IO[bytes], sink: IO[bytes] | None, progress: Progress) -> str:
    """sha256 of ``source``'s content, written to ``sink`` (if any) with its holes left out."""
    digest = hashlib.sha256()
    size = os.fstat(source.fileno()).st_size
    position = 0
    for start, end in _data_regions(source.fileno(), size):
        _hash_zeros(digest, start - position)
        progress(start - position)
        source.seek(start)
        if sink is not None:
            sink.seek(start)
        while start < end:
            chunk = source.read(min(_CHUNK, end - start))
            if not chunk:
                raise BackupError(f"{source.name} shrank while it was read: is it in use?")
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
            start += len(chunk)
            progress(len(chunk))
        position = end
    _hash_zeros(digest, size - position)
    progress(size - position)
    if sink is not None:
        sink.truncate(size)  # the trailing hole, if any
    return digest.hexdigest()


def copy_file(source: Path, target: Path, progress: Progress) -> str:
    """Copy a file (holes kept, fsynced, mode kept); returns the sha256 of what was read."""
    with source.open("rb") as reading, target.open("wb") as writing:
        digest = _stream(reading, writing, progress)
        writing.flush()
        os.fsync(writing.fileno())
    shutil.copymode(source, target)
    return digest


def file_sha256(path: Path, progress: Progress = lambda _: None) -> str:
    """sha256 of a file's content (holes hashed as the zeros they read as), fsynced too."""
    with path.open("rb") as reading:
        # The engine wrote to this copy when it was loaded to count it: make that durable too.
        os.fsync(reading.fileno())
        return _stream(reading, None, progress)


def tree(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every folder and every file under ``folder``, relative to it, sorted; refuse the rest.

    Folders are listed too because a shard may need an empty one (``segments/``).
    """
    folders: list[Path] = []
    files: list[Path] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise BackupError(f"{path} is not a plain file or folder: refusing to copy it")
        (folders if path.is_dir() else files).append(relative)
    return folders, files


def copy_tree(
    source: Path,
    target: Path,
    progress: Progress,
    check: Callable[[Path, str], None] = lambda _path, _digest: None,
) -> None:
    """Copy a folder's tree; ``check`` sees every file's path (relative) and sha256."""
    folders, files = tree(source)
    target.mkdir()
    for folder in folders:
        (target / folder).mkdir()
    for file in files:
        check(file, copy_file(source / file, target / file, progress))


def fsync_tree(folder: Path) -> None:
    """Make every entry of every folder under ``folder`` (itself included) durable."""
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(folder)


def disk_usage(folder: Path) -> int:
    """Bytes a folder's files take on disk (their holes take none)."""
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())
