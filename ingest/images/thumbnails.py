"""Small WebP thumbnails made at ingest time from the decoded picture, stored by content.

A thumbnail is made from the picture the model sees (upright, transparency on white), from
the same decode as the model input: ingestion never decodes an image twice for it. Its key is
the sha256 of the WebP bytes, so a key names one thumbnail for good (the API serves it with
an immutable cache header) and identical thumbnails are stored once.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Final

from PIL import Image

from ingest.images.blobs import file_holds, write_atomically
from ingest.images.decode import sha256_hex, to_rgb

logger = logging.getLogger(__name__)

DEFAULT_THUMBNAIL_SIZE: Final = 256
DEFAULT_THUMBNAIL_QUALITY: Final = 80
THUMBNAIL_MEDIA_TYPE: Final = "image/webp"
THUMBNAIL_KEY_PATTERN: Final = "^[0-9a-f]{64}$"

_KEY: Final = re.compile(r"[0-9a-f]{64}")
_MAX_QUALITY: Final = 100
# Pillow first shrinks by an integer factor (cheap box filter), then resamples the last
# factor of up to 3 with Lanczos: indistinguishable from Lanczos all the way, much faster.
_REDUCING_GAP: Final = 3.0


def thumbnail_dimensions(width: int, height: int, size: int) -> tuple[int, int]:
    """Width and height with the longest side ``size`` and the same aspect ratio.

    Pictures already within ``size`` keep their dimensions: enlarging adds bytes, not detail.
    """
    longest = max(width, height)
    if longest <= size:
        return width, height
    if width >= height:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


def make_thumbnail(
    image: Image.Image,
    *,
    size: int = DEFAULT_THUMBNAIL_SIZE,
    quality: int = DEFAULT_THUMBNAIL_QUALITY,
) -> bytes:
    """WebP bytes of the picture shrunk to ``size`` on its longest side (aspect ratio kept)."""
    if size < 1:
        raise ValueError(f"thumbnail size must be positive, not {size}")
    if not 0 <= quality <= _MAX_QUALITY:
        raise ValueError(f"WebP quality must be within 0..100, not {quality}")
    # A no-op for decode_image's output; other callers may hand in RGBA, palette or 16-bit.
    rgb = to_rgb(image)
    target = thumbnail_dimensions(*rgb.size, size)
    if target != rgb.size:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    buffer = io.BytesIO()
    # Only pixels are written: Pillow's WebP encoder takes EXIF and ICC from explicit
    # arguments only, so a phone photo's GPS position never reaches a thumbnail.
    rgb.save(buffer, format="WEBP", quality=quality)
    return buffer.getvalue()


def is_thumbnail_key(key: str) -> bool:
    """Whether ``key`` is a thumbnail key: 64 lower-case hex digits, nothing else."""
    return _KEY.fullmatch(key) is not None


class ThumbnailStore:
    """Content-addressed thumbnails on local disk: key ``<sha256>`` at ``ab/cd/<sha256>.webp``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> str:
        """Store the WebP bytes (atomically, once) and return their key."""
        if not data:
            raise ValueError("refusing to store an empty thumbnail")
        key = sha256_hex(data)
        path = self.path_for(key)
        # An intact copy is kept as is; a damaged one is rewritten (healed).
        if not file_holds(path, key):
            write_atomically(path, data)
        return key

    def path_for(self, key: str) -> Path:
        """Where the thumbnail named by ``key`` lives (it may not exist); ValueError if bad."""
        # Strict format before any path is built: no "..", no "/", no other spelling of a key.
        if not is_thumbnail_key(key):
            raise ValueError(f"not a thumbnail key (64 lower-case hex digits): {key[:80]!r}")
        # Two levels of 256 directories keep any one directory small at millions of images.
        return self.root / key[:2] / key[2:4] / f"{key}.webp"

    def get(self, key: str) -> bytes | None:
        """The thumbnail's bytes, or None for a malformed, unknown or corrupt key."""
        if not is_thumbnail_key(key):
            return None
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        if sha256_hex(data) != key:
            # Never serve other bytes under a content address (clients cache it for good).
            logger.warning("thumbnail %s is corrupt on disk (%s); not served", key, path)
            return None
        return data
