"""Image bytes to model input: read, decode, orient, convert to RGB, resize and normalise.

Every way an upload can be unusable ends as ``InvalidImage`` with a machine-readable reason,
never as a hang or as some other exception, because a worker dead-letters ``InvalidImage``
and retries everything else.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from ingest.errors import InvalidImage, InvalidImageReason
from ingest.images.formats import READS_TO_THE_END, SIGNATURES, SUPPORTED_FORMATS
from schemas.models import Preprocessing, Resample, ResizeMode
from schemas.settings import ImageLimits

logger = logging.getLogger(__name__)

__all__ = ["SUPPORTED_FORMATS", "decode_image", "load_for_model", "preprocess", "to_rgb"]

# What Pillow and its plugins raise on bad bytes: OSError (and UnidentifiedImageError),
# SyntaxError from header parsers, ValueError/TypeError/IndexError/KeyError/struct.error from
# malformed fields, EOFError from frame logic, ZeroDivisionError/OverflowError from absurd
# header values, RuntimeError from libheif, and UserWarning about corrupt metadata when the
# process turns warnings into errors (python -W error, pytest's filterwarnings = error).
# MemoryError is left out on purpose: within the pixel limit it means the machine is short of
# memory, which is worth a retry elsewhere.
_DECODE_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    ZeroDivisionError,
    OverflowError,
    RuntimeError,
    UserWarning,
)

# Pillow words truncation differently per plugin ("image file is truncated", "Truncated File
# Read", AVIF's "Truncated data", libheif's "Unexpected end of file").
_TRUNCATION_HINTS: Final = ("truncated", "unexpected end of file", "premature end")

# Parsing a broken EXIF block (a small TIFF inside the file) fails in these ways.
_EXIF_ERRORS: Final = (
    SyntaxError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OSError,
    struct.error,
    UserWarning,
)

_RESAMPLE: Final = {
    Resample.BILINEAR: Image.Resampling.BILINEAR,
    Resample.BICUBIC: Image.Resampling.BICUBIC,
}

# Modes Image.reduce handles; others (palette, 1-bit, 16-bit) are converted at full size first.
_REDUCIBLE_MODES: Final = frozenset({"L", "LA", "RGB", "RGBA", "RGBa", "La", "I", "F", "CMYK"})
DRAFT_MARGIN = 3  # a draft keeps both sides at least this many times the largest size needed
REDUCE_MARGIN = 1  # other formats are reduced to keep both sides at least the draft size
REDUCE_MIN_FACTOR = 2  # reducing by less saves little and changes pixels for nothing

# Modes whose samples do not fit in 8 bits: Pillow's plain convert() clips them at 255.
_HIGH_DEPTH_MODES: Final = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_UINT16_LEVELS: Final = 65535.0
_UINT8_LEVELS: Final = 255.0

# Without O_NONBLOCK, opening a FIFO waits for a writer forever; on regular files it is a no-op.
_OPEN_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_READ_CHUNK: Final = 1024 * 1024
_RIFF_HEADER_BYTES: Final = 12


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of the bytes: the image's identity in point ids and payloads."""
    return hashlib.sha256(data).hexdigest()


def read_image_file(path: Path, limits: ImageLimits) -> bytes:
    """Read an image file's bytes, refusing missing, non-regular, empty or oversized files."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
        raise InvalidImage(InvalidImageReason.NOT_FOUND, f"no such file: {path}") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # Directories, FIFOs and devices (/dev/zero never ends) are not image files.
            raise InvalidImage(InvalidImageReason.NOT_FOUND, f"not a regular file: {path}")
        if info.st_size > limits.max_bytes:
            raise InvalidImage(
                InvalidImageReason.TOO_MANY_BYTES,
                f"{path} has {info.st_size} bytes, more than the limit of {limits.max_bytes}",
            )
        # One byte past the limit, in case the file grew after fstat.
        data = _read_at_most(fd, limits.max_bytes + 1)
    finally:
        os.close(fd)
    _check_byte_count(len(data), limits)
    return data


def decode_image(data: bytes, limits: ImageLimits, *, draft_size: int | None = None) -> Image.Image:
    """Decode image bytes into a fully loaded, upright RGB picture, or raise ``InvalidImage``."""
    _check_byte_count(len(data), limits)
    if limits.exact_decode:
        draft_size = None  # full size, as the reference pipeline decodes
    stream = _WatchedBytes(data)
    try:
        with Image.open(stream, formats=SUPPORTED_FORMATS) as image:
            # The header's size is all we know before pixels are allocated: check it now.
            _check_dimensions(image.size, limits)
            if draft_size is not None and isinstance(image, JpegImagePlugin.JpegImageFile):
                # libjpeg scales by 1/2, 1/4 or 1/8 while decoding (DCT domain), keeping both
                # sides >= draft_size: most of the decode cost of a large photo disappears.
                image.draft("RGB", (draft_size, draft_size))
            stream.watching = True
            image.load()
            stream.watching = False
            if stream.ran_dry and image.format not in READS_TO_THE_END:
                # The decoder wanted bytes past the end yet Pillow did not raise: someone set
                # ImageFile.LOAD_TRUNCATED_IMAGES (the rest is padded with grey), or only a
                # PNG's trailer is missing. Either way the upload was cut short.
                raise InvalidImage(
                    InvalidImageReason.TRUNCATED, "image data ends before the picture does"
                )
            # The full-size picture is dropped when this block ends: only the reduced one
            # lives on, so colour conversion and compositing never touch the full size.
            return to_rgb(_upright(_reduced(image, draft_size)))
    except UnidentifiedImageError as error:
        raise _unidentified(data) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own guard (Image.MAX_IMAGE_PIXELS) fired before ours could; the warning
        # only arrives as an exception when warnings are turned into errors.
        raise InvalidImage(
            InvalidImageReason.DECOMPRESSION_BOMB, f"refused by Pillow: {error}"
        ) from error
    except _DECODE_ERRORS as error:
        raise _classify_decode_error(error, data, stream) from error


def _reduced(image: Image.Image, draft_size: int | None) -> Image.Image:
    """A large picture box-reduced by a whole factor, keeping both sides >= draft_size.

    What libjpeg's draft does for JPEG, for every other format after decoding: a 7000 x 7000
    PNG costs its decoded size plus a small picture, not several full-size copies (RGBA,
    white backdrop, composite, RGB). The draft size already has its margin over the sizes
    needed, so the later resize stays an honest downscale and embeddings barely move.
    """
    if draft_size is None or image.mode not in _REDUCIBLE_MODES:
        return image
    factor = min(image.size) // (REDUCE_MARGIN * draft_size)
    # Image.reduce weighs colours by their alpha, so the colour hidden under transparent
    # pixels (often black) does not bleed into the edges (tests/ingest/test_images.py).
    return image.reduce(factor) if factor >= REDUCE_MIN_FACTOR else image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: transparency onto white, 16-bit and float scaled to 8-bit."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(image).convert("RGB")
    if image.mode == "La":
        image = image.convert("LA")  # premultiplied grey-alpha has no direct route to RGBA
    if image.has_transparency_data:
        # Product shots on transparent backgrounds: the hidden RGB under alpha 0 is usually
        # black, and dropping alpha would put the product on a black square.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess(image: Image.Image, spec: Preprocessing) -> npt.NDArray[np.float32]:
    """Turn a picture into the model's (3, size, size) float32 CHW input, as ``spec`` says."""
    rgb = to_rgb(image)
    size = spec.input_size
    resample = _RESAMPLE[spec.resample]
    if spec.resize is ResizeMode.SQUASH:
        resized = rgb.resize((size, size), resample)
    else:
        resized = _resize_shortest_side_and_crop(rgb, size, resample)
    # Same operations in the same order and dtype as the reference DINOv2 ONNX preprocessing,
    # so tensors match it exactly.
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    normalised = (pixels - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def draft_size_for(specs: Iterable[Preprocessing], thumbnail_size: int | None = None) -> int:
    """Smallest side a JPEG draft decode must keep for these models' inputs and a thumbnail.

    ``DRAFT_MARGIN`` times the largest size needed: measured on textured photos (`python -m
    bench.decode_bench`), a draft at 1x that size moves embeddings to cosine 0.9987 against a
    full decode, at 3x they stay at >= 0.9999 for about half the cost of a full decode.
    """
    sizes = [spec.input_size for spec in specs]
    if thumbnail_size is not None:
        sizes.append(thumbnail_size)
    return DRAFT_MARGIN * max(sizes, default=1)


def load_for_model(
    data: bytes,
    spec: Preprocessing,
    limits: ImageLimits,
    *,
    jpeg_draft: bool = True,
    thumbnail_size: int | None = None,
) -> npt.NDArray[np.float32]:
    """Decode image bytes and preprocess them into the model's input tensor.

    Pass the ingest side's ``thumbnail_size`` to draft-decode exactly as ingestion does, so a
    query image gives the same tensor as the stored copy of that image.
    """
    draft = draft_size_for([spec], thumbnail_size) if jpeg_draft else None
    image = decode_image(data, limits, draft_size=draft)
    return preprocess(image, spec)


class _WatchedBytes(io.BytesIO):
    """In-memory file that notes when a decoder asks for bytes past the end of the data."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.watching = False
        self.ran_dry = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if self.watching and not chunk and size != 0:
            self.ran_dry = True
        return chunk


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _check_byte_count(count: int, limits: ImageLimits) -> None:
    if count == 0:
        raise InvalidImage(InvalidImageReason.EMPTY, "no bytes")
    if count > limits.max_bytes:
        raise InvalidImage(
            InvalidImageReason.TOO_MANY_BYTES,
            f"{count} bytes, more than the limit of {limits.max_bytes}",
        )


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidImage(
            InvalidImageReason.DECODE_ERROR, f"image has no pixels ({width}x{height})"
        )
    if width * height > limits.max_pixels:
        raise InvalidImage(
            InvalidImageReason.DECOMPRESSION_BOMB,
            f"{width}x{height} is {width * height} pixels, more than the limit of "
            f"{limits.max_pixels}",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise InvalidImage(
            InvalidImageReason.BAD_ASPECT_RATIO,
            f"{width}x{height} has aspect ratio {ratio:.1f}, more than {limits.max_aspect_ratio}",
        )


def _upright(image: Image.Image) -> Image.Image:
    """The picture as it is meant to be seen (EXIF orientation applied)."""
    try:
        return ImageOps.exif_transpose(image)
    except _EXIF_ERRORS as error:
        # Broken metadata must not cost us a readable picture: keep it as stored.
        logger.debug("ignoring unreadable EXIF orientation: %s", error)
        return image.copy()


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float grey to 8 bits instead of clipping at 255."""
    values = np.asarray(image).astype(np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= _UINT16_LEVELS):
        # 16-bit samples (PNG, TIFF); "I" within that range is 16-bit data widened by a plugin.
        scaled = values * (_UINT8_LEVELS / _UINT16_LEVELS)
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * _UINT8_LEVELS
    elif image.mode == "F" and low >= 0 and high <= _UINT8_LEVELS:
        scaled = values
    elif high > low:
        # No known range (signed or 32-bit integers, HDR floats): stretch what is there.
        scaled = (values - low) * (_UINT8_LEVELS / (high - low))
    else:
        scaled = np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _resize_shortest_side_and_crop(
    image: Image.Image, size: int, resample: Image.Resampling
) -> Image.Image:
    """torchvision's Resize(size) then CenterCrop(size), with the same rounding."""
    width, height = image.size
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    resized = image.resize(new_size, resample)
    left = round((new_size[0] - size) / 2.0)
    top = round((new_size[1] - size) / 2.0)
    return resized.crop((left, top, left + size, top + size))


def _sniff_format(data: bytes) -> str | None:
    """Which supported format the bytes claim to be, by magic number only."""
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return None


def _riff_is_short(data: bytes) -> bool:
    """A WebP (RIFF) file declares its length up front: fewer bytes means truncation."""
    if data[:4] != b"RIFF" or len(data) < _RIFF_HEADER_BYTES:
        return False
    declared = int.from_bytes(data[4:8], "little") + 8
    return len(data) < declared


def _unidentified(data: bytes) -> InvalidImage:
    claimed = _sniff_format(data)
    if claimed is None:
        return InvalidImage(
            InvalidImageReason.NOT_AN_IMAGE,
            f"not a supported image format ({', '.join(SUPPORTED_FORMATS)})",
        )
    if _riff_is_short(data):
        return InvalidImage(InvalidImageReason.TRUNCATED, f"{claimed} data ends early")
    return InvalidImage(
        InvalidImageReason.DECODE_ERROR, f"starts like {claimed} but its header cannot be read"
    )


def _classify_decode_error(error: Exception, data: bytes, stream: _WatchedBytes) -> InvalidImage:
    text = str(error)
    lowered = text.lower()
    if stream.ran_dry or _riff_is_short(data) or any(h in lowered for h in _TRUNCATION_HINTS):
        return InvalidImage(InvalidImageReason.TRUNCATED, f"image data ends early: {text}")
    if "decompressed data too large" in lowered:
        # A small zlib stream (PNG iCCP/zTXt chunk) inflating past Pillow's chunk limit.
        return InvalidImage(InvalidImageReason.DECOMPRESSION_BOMB, text)
    kind = type(error).__name__
    return InvalidImage(InvalidImageReason.DECODE_ERROR, f"cannot decode: {kind}: {text}")
