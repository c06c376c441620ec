"""The content-addressed blob store where uploads wait for a worker, written atomically."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Final

from ingest.errors import InvalidImage, InvalidImageReason, SourceUnavailable
from ingest.images.decode import read_image_file, sha256_hex
from ingest.models.registry import file_sha256
from schemas.settings import ImageLimits

_BLOB_URI: Final = re.compile(r"blob://([0-9a-f]{64})")
# Enough of a URI to recognise it in a message; a hostile one stays out of the logs.
SHOWN_URI_CHARS: Final = 200


def shown_uri(uri: str) -> str:
    """The URI for an error message, cut short: a data: URI can be megabytes long."""
    return repr(uri if len(uri) <= SHOWN_URI_CHARS else f"{uri[:SHOWN_URI_CHARS]}...")


def blob_digest(uri: str) -> str:
    """The sha256 a ``blob://`` URI names, or BAD_URI."""
    match = _BLOB_URI.fullmatch(uri)
    if match is None:
        raise InvalidImage(
            InvalidImageReason.BAD_URI,
            f"{shown_uri(uri)} is not a blob URI (blob:// and 64 lower-case hex digits)",
        )
    return match.group(1)


def read_local(path: Path, limits: ImageLimits) -> bytes:
    """Read a blob file; I/O failures of our own store are worth a retry."""
    try:
        return read_image_file(path, limits)
    except OSError as error:
        raise SourceUnavailable(f"could not read {path}: {error}") from error


class BlobStore:
    """Content-addressed image bytes on local disk: ``blob://<sha>`` lives at ``ab/cd/<sha>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> str:
        """Store the bytes (atomically, once) and return their ``blob://<sha256>`` URI."""
        if not data:
            raise InvalidImage(InvalidImageReason.EMPTY, "refusing to store an empty blob")
        digest = sha256_hex(data)
        path = self._path(digest)
        # Skipping an intact copy keeps re-uploads cheap; a damaged one is rewritten (healed).
        if not file_holds(path, digest):
            write_atomically(path, data)
        return f"blob://{digest}"

    def path_for(self, uri: str) -> Path:
        """Where the blob named by ``uri`` lives (it may not exist)."""
        return self._path(blob_digest(uri))

    def get(self, uri: str, limits: ImageLimits) -> bytes:
        """Read a blob, checking limits and that the bytes still hash to their name."""
        digest = blob_digest(uri)
        data = read_local(self._path(digest), limits)
        actual = sha256_hex(data)
        if actual != digest:
            # NOT_FOUND, not DECODE_ERROR: the image this URI names is no longer in the store
            # (the disk holds other bytes), and those bytes must never be embedded under
            # this sha256. Uploading the image again heals the blob.
            raise InvalidImage(
                InvalidImageReason.NOT_FOUND,
                f"{uri} is corrupt in the blob store (its bytes hash to {actual}); "
                "upload the image again",
            )
        return data

    def delete(self, uri: str) -> bool:
        """Remove a blob; return whether it existed."""
        try:
            self.path_for(uri).unlink()
        except FileNotFoundError:
            return False
        return True

    def _path(self, digest: str) -> Path:
        # Two levels of 256 directories keep any one directory small at millions of blobs.
        return self.root / digest[:2] / digest[2:4] / digest


def file_holds(path: Path, digest: str) -> bool:
    """Whether ``path`` exists and its bytes hash to ``digest``."""
    try:
        return file_sha256(path) == digest
    except OSError:
        return False


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a unique temp file and os.replace, so readers never see a partial blob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target (same filesystem, so os.replace is atomic); the leading dot and
    # suffix keep it from ever looking like a blob.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temp.open("xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # The API acknowledges an upload once its blob is stored: make the new name durable too.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
