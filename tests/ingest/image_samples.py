"""Image factories for tests: pictures with known content, encoded in memory, plus hostile bytes.

Importing ``ingest.images.decode`` registers the HEIF opener, which ``encode(..., "HEIF")`` needs.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import ingest.images.decode  # noqa: F401  (registers the HEIF plugin for encoding)

RED = (255, 0, 0)
GREEN = (0, 160, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)

# Where the shapes of `picture()` are, as fractions of width and height: tests look up pixels
# well inside them so that lossy codecs and resampling do not matter.
DISC_CENTRE = (0.25, 0.35)
SQUARE_CENTRE = (0.75, 0.7)
CORNER_SIZE = 0.15  # the red square in the top-left corner, for orientation checks


def picture(width: int = 320, height: int = 240) -> Image.Image:
    """RGB gradient background with a red disc, a blue square and a red top-left corner."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    channels = (
        60 + 120 * x * np.ones_like(y),
        200 - 120 * y * np.ones_like(x),
        110 + 60 * np.sin(6 * x) * np.cos(5 * y),
    )
    image = Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    cx, cy = DISC_CENTRE[0] * width, DISC_CENTRE[1] * height
    radius = 0.15 * min(width, height)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=RED)
    sx, sy = SQUARE_CENTRE[0] * width, SQUARE_CENTRE[1] * height
    half = 0.12 * min(width, height)
    draw.rectangle((sx - half, sy - half, sx + half, sy + half), fill=BLUE)
    corner = CORNER_SIZE * min(width, height)
    draw.rectangle((0, 0, corner, corner), fill=RED)
    return image


def textured_photo(width: int = 1600, height: int = 1200) -> Image.Image:
    """A larger picture with fine detail everywhere, standing in for a camera photo."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    channels = (
        255 * x * np.ones_like(y),
        255 * y * np.ones_like(x),
        127 + 120 * np.sin(40 * x) * np.cos(30 * y),
    )
    image = Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((0.2 * width, 0.15 * height, 0.55 * width, 0.65 * height), fill=(200, 30, 40))
    draw.rectangle((0.62 * width, 0.25 * height, 0.93 * width, 0.85 * height), fill=(20, 160, 60))
    return image


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """The image saved in memory as ``fmt`` with Pillow's save parameters."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def exif_with_orientation(orientation: int) -> bytes:
    """A serialised EXIF block holding only the Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def half_transparent_rgba(width: int = 64, height: int = 48) -> Image.Image:
    """Left half fully transparent *black* (as editors store it), right half opaque red."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((*RED, 255), (width // 2, 0, width, height))
    return image


def animated(
    colours: list[tuple[int, int, int]], size: tuple[int, int] = (48, 32)
) -> list[Image.Image]:
    """Solid frames in the given colours, one per colour."""
    return [Image.new("RGB", size, colour) for colour in colours]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_with_iccp_zlib_bomb() -> bytes:
    """A valid 8x8 PNG carrying an ICC profile chunk that inflates from ~50 KB to 50 MB."""
    small = encode(Image.new("RGB", (8, 8), GREEN), "PNG")
    iccp = png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 50_000_000, 9))
    ihdr_end = 8 + 25  # signature + IHDR chunk (4 length + 4 type + 13 data + 4 crc)
    return small[:ihdr_end] + iccp + small[ihdr_end:]


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of the bytes, as an interrupted upload leaves them."""
    return data[: int(len(data) * fraction)]
