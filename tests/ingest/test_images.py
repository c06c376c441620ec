"""ingest.images.decode: reading, decoding (every format and mode), hostile input, preprocessing."""

from __future__ import annotations

import io
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFile

from ingest.errors import InvalidImage, InvalidImageReason
from ingest.images.decode import (
    SUPPORTED_FORMATS,
    decode_image,
    draft_size_for,
    load_for_model,
    preprocess,
    read_image_file,
    sha256_hex,
    to_rgb,
)
from schemas.models import Preprocessing, Resample, ResizeMode
from schemas.settings import ImageLimits
from tests.ingest.image_samples import (
    BLUE,
    DISC_CENTRE,
    GREEN,
    RED,
    SQUARE_CENTRE,
    WHITE,
    animated,
    encode,
    exif_with_orientation,
    half_transparent_rgba,
    picture,
    png_claiming_size,
    png_with_iccp_zlib_bomb,
    textured_photo,
    truncated,
)

Reason = InvalidImageReason
LIMITS = ImageLimits()
Colour = tuple[int, ...]


def colour_at(image: Image.Image, fx: float, fy: float) -> Colour:
    """The pixel at a fractional position (0..1) of the image."""
    x = min(int(fx * image.width), image.width - 1)
    y = min(int(fy * image.height), image.height - 1)
    pixel = image.getpixel((x, y))
    assert isinstance(pixel, tuple)
    return pixel


def colour_distance(actual: Colour, expected: Colour) -> int:
    """Largest per-channel difference."""
    return max(abs(int(a) - int(e)) for a, e in zip(actual, expected, strict=True))


def assert_colour(actual: Colour, expected: Colour, tolerance: int = 0) -> None:
    assert colour_distance(actual, expected) <= tolerance, f"{actual} is not {expected}"


def refusal(data: bytes, limits: ImageLimits = LIMITS, **kwargs: Any) -> InvalidImage:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, limits, **kwargs)
    return caught.value


# --- sha256_hex ----------------------------------------------------------------------------


def test_sha256_hex_matches_the_standard_test_vector() -> None:
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"abc") == expected


# --- read_image_file -----------------------------------------------------------------------


def test_read_image_file_returns_the_bytes(tmp_path: Path) -> None:
    data = encode(picture(), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    assert read_image_file(path, LIMITS) == data


def test_read_image_file_follows_symlinks(tmp_path: Path) -> None:
    data = encode(picture(), "JPEG")
    (tmp_path / "real.jpg").write_bytes(data)
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    assert read_image_file(tmp_path / "link.jpg", LIMITS) == data


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.jpg"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "folder.jpg").mkdir()
    return tmp_path / "folder.jpg"


def _broken_symlink(tmp_path: Path) -> Path:
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    return tmp_path / "dangling.jpg"


def _below_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file.jpg").write_bytes(b"x")
    return tmp_path / "file.jpg" / "child.jpg"


def _fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(tmp_path / "pipe.jpg")
    return tmp_path / "pipe.jpg"


def _device(tmp_path: Path) -> Path:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this platform")
    return Path("/dev/zero")


@pytest.mark.timeout(10)  # a FIFO or /dev/zero read by mistake would block or never end
@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(_missing, id="missing"),
        pytest.param(_directory, id="directory"),
        pytest.param(_broken_symlink, id="broken-symlink"),
        pytest.param(_below_a_file, id="path-below-a-file"),
        pytest.param(_fifo, id="named-pipe-without-writer"),
        pytest.param(_device, id="dev-zero"),
    ],
)
def test_read_image_file_refuses_what_is_not_a_file(
    tmp_path: Path, make_path: Callable[[Path], Path]
) -> None:
    with pytest.raises(InvalidImage) as caught:
        read_image_file(make_path(tmp_path), LIMITS)
    assert caught.value.reason is Reason.NOT_FOUND


def test_read_image_file_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidImage) as caught:
        read_image_file(path, LIMITS)
    assert caught.value.reason is Reason.EMPTY


def test_read_image_file_checks_the_size_before_reading(tmp_path: Path) -> None:
    # 10 GiB sparse file: reading it would take long and exhaust memory; stat answers at once.
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.truncate(10 * 1024**3)
    started = time.perf_counter()
    with pytest.raises(InvalidImage) as caught:
        read_image_file(path, LIMITS)
    assert caught.value.reason is Reason.TOO_MANY_BYTES
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("extra_allowed", "accepted"),
    [
        pytest.param(0, True, id="exactly-max-bytes"),
        pytest.param(-1, False, id="one-byte-over"),
    ],
)
def test_read_image_file_byte_limit_boundary(
    tmp_path: Path, extra_allowed: int, accepted: bool
) -> None:
    data = encode(picture(), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    limits = ImageLimits(max_bytes=len(data) + extra_allowed)
    if accepted:
        assert read_image_file(path, limits) == data
    else:
        with pytest.raises(InvalidImage) as caught:
            read_image_file(path, limits)
        assert caught.value.reason is Reason.TOO_MANY_BYTES


# --- formats -------------------------------------------------------------------------------

FORMATS = [
    pytest.param("JPEG", {"quality": 90}, 40, id="jpeg"),
    pytest.param("JPEG", {"quality": 90, "progressive": True}, 40, id="jpeg-progressive"),
    pytest.param("PNG", {}, 0, id="png"),
    pytest.param("WEBP", {"quality": 90}, 40, id="webp-lossy"),
    pytest.param("WEBP", {"lossless": True}, 0, id="webp-lossless"),
    pytest.param("GIF", {}, 40, id="gif"),
    pytest.param("BMP", {}, 0, id="bmp"),
    pytest.param("TIFF", {}, 0, id="tiff"),
    pytest.param("TIFF", {"compression": "tiff_lzw"}, 0, id="tiff-lzw"),
    pytest.param("TIFF", {"compression": "jpeg"}, 40, id="tiff-jpeg"),
    pytest.param("HEIF", {"quality": 90}, 40, id="heif"),
    pytest.param("AVIF", {"quality": 90}, 40, id="avif"),
    pytest.param(
        "MPO", {"save_all": True, "append_images": [picture(320, 240)]}, 40, id="mpo-camera-jpeg"
    ),
    # Less common formats, decoded because Pillow can: nothing a user sends is refused for
    # being unusual.
    pytest.param("TGA", {}, 0, id="tga"),
    pytest.param("PPM", {}, 0, id="ppm"),
    pytest.param("PCX", {}, 0, id="pcx"),
    pytest.param("QOI", {}, 0, id="qoi"),
    pytest.param("SGI", {}, 0, id="sgi"),
    pytest.param("JPEG2000", {"quality_mode": "dB", "quality_layers": [40]}, 40, id="jpeg2000"),
]


@pytest.mark.parametrize(("fmt", "params", "tolerance"), FORMATS)
def test_decodes_every_supported_format(fmt: str, params: dict[str, Any], tolerance: int) -> None:
    original = picture()
    decoded = decode_image(encode(original, fmt, **params), LIMITS)

    assert decoded.mode == "RGB"
    assert decoded.size == original.size
    assert not isinstance(decoded, ImageFile.ImageFile)  # pixels in memory, no file behind
    assert_colour(colour_at(decoded, *DISC_CENTRE), RED, tolerance)
    assert_colour(colour_at(decoded, *SQUARE_CENTRE), BLUE, tolerance)
    background = (0.5, 0.1)
    assert_colour(colour_at(decoded, *background), colour_at(original, *background), tolerance)


def test_every_decodable_still_format_is_supported_and_the_risky_ones_are_not() -> None:
    assert {"ICO", "TGA", "PPM", "PCX", "QOI", "PSD", "JPEG2000", "DDS"} <= set(SUPPORTED_FORMATS)
    # Ghostscript, video, metadata, and plugins that cannot decode without a handler.
    assert not {"EPS", "MPEG", "IPTC", "BUFR", "GRIB", "HDF5", "WMF"} & set(SUPPORTED_FORMATS)
    assert SUPPORTED_FORMATS[:2] == ("JPEG", "PNG")
    assert SUPPORTED_FORMATS[-1] == "TGA"  # no magic number: tried after every other plugin


def test_an_icon_file_decodes_to_its_largest_picture() -> None:
    original = picture(128, 96)
    decoded = decode_image(encode(original, "ICO", sizes=[(128, 96)]), LIMITS)
    assert decoded.mode == "RGB"
    assert_colour(colour_at(decoded, *DISC_CENTRE), RED, 0)
    assert_colour(colour_at(decoded, *SQUARE_CENTRE), BLUE, 0)


# --- modes ---------------------------------------------------------------------------------

COLOUR = (200, 100, 50)


@dataclass(frozen=True)
class ModeCase:
    """An image in some Pillow mode and the RGB colour it must come out as."""

    make: Callable[[], Image.Image]
    expected: Colour
    tolerance: int = 0


def _solid(mode: str, value: Any) -> Callable[[], Image.Image]:
    return lambda: Image.new(mode, (16, 12), value)


def _from_rgb(mode: str, colour: Colour = COLOUR) -> Callable[[], Image.Image]:
    return lambda: Image.new("RGB", (16, 12), colour).convert(mode)


def _palette() -> Image.Image:
    image = Image.new("P", (16, 12), 1)
    image.putpalette([0, 0, 0, *COLOUR])
    return image


FILE_MODES = [
    pytest.param(ModeCase(_solid("1", 1), WHITE), "PNG", id="1-png"),
    pytest.param(ModeCase(_solid("L", 100), (100, 100, 100)), "PNG", id="L-png"),
    pytest.param(ModeCase(_solid("LA", (100, 255)), (100, 100, 100)), "PNG", id="LA-png"),
    pytest.param(ModeCase(_palette, COLOUR), "PNG", id="P-png"),
    pytest.param(ModeCase(_solid("RGBA", (*COLOUR, 255)), COLOUR), "PNG", id="RGBA-png"),
    pytest.param(ModeCase(_from_rgb("CMYK"), COLOUR, 8), "JPEG", id="CMYK-jpeg"),
    pytest.param(ModeCase(_from_rgb("CMYK"), COLOUR), "TIFF", id="CMYK-tiff"),
    pytest.param(ModeCase(_from_rgb("YCbCr"), COLOUR, 3), "TIFF", id="YCbCr-tiff"),
    pytest.param(ModeCase(_from_rgb("LAB"), COLOUR, 3), "TIFF", id="LAB-tiff"),
    pytest.param(ModeCase(_solid("I;16", 32896), (128, 128, 128)), "PNG", id="I16-png"),
    pytest.param(ModeCase(_solid("I;16", 32896), (128, 128, 128)), "TIFF", id="I16-tiff"),
    pytest.param(ModeCase(_solid("I;16B", 65535), WHITE), "TIFF", id="I16B-tiff"),
    pytest.param(ModeCase(_solid("I", 32896), (128, 128, 128)), "TIFF", id="I32-tiff"),
    pytest.param(ModeCase(_solid("F", 0.5), (128, 128, 128)), "TIFF", id="F-tiff"),
]


@pytest.mark.parametrize(("case", "fmt"), FILE_MODES)
def test_decode_converts_every_file_mode_to_rgb(case: ModeCase, fmt: str) -> None:
    source = case.make()
    with Image.open(io.BytesIO(encode(source, fmt))) as reopened:
        assert reopened.mode == source.mode  # the file really holds that mode
    decoded = decode_image(encode(source, fmt), LIMITS)
    assert decoded.mode == "RGB"
    assert_colour(colour_at(decoded, 0.5, 0.5), case.expected, case.tolerance)


def _converted(mode: str, value: Any, target: str) -> Callable[[], Image.Image]:
    return lambda: Image.new(mode, (16, 12), value).convert(target)


MEMORY_MODES = [
    pytest.param(ModeCase(lambda: _palette().convert("PA"), COLOUR), id="PA"),
    pytest.param(ModeCase(_converted("RGBA", (*COLOUR, 255), "RGBa"), COLOUR), id="RGBa"),
    pytest.param(ModeCase(_converted("LA", (100, 255), "La"), (100, 100, 100)), id="La"),
    pytest.param(ModeCase(_from_rgb("RGBX"), COLOUR), id="RGBX"),
    pytest.param(ModeCase(_from_rgb("HSV"), COLOUR, 3), id="HSV"),
    pytest.param(ModeCase(_solid("I;16L", 32896), (128, 128, 128)), id="I16L"),
    pytest.param(ModeCase(_solid("I;16N", 0), (0, 0, 0)), id="I16N"),
    pytest.param(ModeCase(_solid("F", 1.0), WHITE), id="F-unit-range"),
    pytest.param(ModeCase(_solid("F", 100.0), (100, 100, 100)), id="F-8bit-range"),
    pytest.param(ModeCase(_solid("RGB", COLOUR), COLOUR), id="RGB"),
]


@pytest.mark.parametrize("case", MEMORY_MODES)
def test_to_rgb_converts_in_memory_modes(case: ModeCase) -> None:
    converted = to_rgb(case.make())
    assert converted.mode == "RGB"
    assert_colour(colour_at(converted, 0.5, 0.5), case.expected, case.tolerance)


def _ramp_16bit() -> npt.NDArray[np.uint16]:
    """64 rows of 0..65535 in 256 steps."""
    return np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (64, 1))


# Built from raw samples: Pillow's own convert() between these modes clips at 255 as well.
SIXTEEN_BIT = {
    "I;16": lambda: Image.fromarray(_ramp_16bit()),
    "I;16B": lambda: Image.frombytes("I;16B", (256, 64), _ramp_16bit().astype(">u2").tobytes()),
    "I": lambda: Image.fromarray(_ramp_16bit().astype(np.int32)),
}


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        pytest.param("I;16", "PNG", id="I16-png"),
        pytest.param("I;16", "TIFF", id="I16-tiff"),
        pytest.param("I;16B", "TIFF", id="I16B-tiff"),
        pytest.param("I", "TIFF", id="I32-tiff"),
    ],
)
def test_sixteen_bit_grey_keeps_its_gradient(mode: str, fmt: str) -> None:
    source = SIXTEEN_BIT[mode]()
    assert source.mode == mode
    decoded = np.asarray(decode_image(encode(source, fmt), LIMITS))
    row = decoded[0, :, 0].astype(int)

    assert (decoded[..., 0] == decoded[..., 1]).all()
    assert (decoded[..., 1] == decoded[..., 2]).all()
    assert row[0] == 0
    assert row[-1] == 255
    assert abs(row[128] - 128) <= 1
    assert (np.diff(row) >= 0).all()
    assert len(np.unique(row)) > 200  # not clipped to white, not crushed to a few levels


@pytest.mark.parametrize(
    ("values", "expected_row"),
    [
        pytest.param([-1000.0, 0.0, 1000.0], [0, 128, 255], id="F-hdr-stretched"),
        pytest.param([float("nan"), 0.25, 1.0], [0, 64, 255], id="F-nan-is-zero"),
    ],
)
def test_float_images_without_a_known_range(values: list[float], expected_row: list[int]) -> None:
    image = Image.fromarray(np.array([values], dtype=np.float32), "F")
    row = np.asarray(to_rgb(image))[0, :, 0].tolist()
    assert row == expected_row


def test_signed_32_bit_integers_are_stretched() -> None:
    image = Image.fromarray(np.array([[-70000, 0, 70000]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 128, 255]


# --- EXIF orientation ----------------------------------------------------------------------

# Where the red top-left corner of `picture()` must end up, per EXIF orientation.
ORIENTATIONS = {
    1: ((320, 240), (0.03, 0.03)),
    3: ((320, 240), (0.97, 0.97)),  # rotated 180
    6: ((240, 320), (0.97, 0.03)),  # rotated 90 clockwise: top-left goes top-right
    8: ((240, 320), (0.03, 0.97)),  # rotated 90 counter-clockwise: top-left goes bottom-left
}


@pytest.mark.parametrize(
    ("fmt", "orientation"),
    [
        pytest.param("JPEG", 1, id="jpeg-1-upright"),
        pytest.param("JPEG", 3, id="jpeg-3"),
        pytest.param("JPEG", 6, id="jpeg-6"),
        pytest.param("JPEG", 8, id="jpeg-8"),
        pytest.param("PNG", 6, id="png-6"),
        pytest.param("TIFF", 6, id="tiff-6"),
        pytest.param("WEBP", 6, id="webp-6"),
        pytest.param("HEIF", 6, id="heif-6"),
        pytest.param("AVIF", 6, id="avif-6"),
    ],
)
def test_exif_orientation_is_applied_once(fmt: str, orientation: int) -> None:
    data = encode(picture(), fmt, exif=exif_with_orientation(orientation))
    decoded = decode_image(data, LIMITS)
    size, red_corner = ORIENTATIONS[orientation]

    assert decoded.size == size
    assert_colour(colour_at(decoded, *red_corner), RED, 40)
    if orientation != 1:
        assert colour_distance(colour_at(decoded, 0.03, 0.03), RED) > 60  # corner moved away


def test_draft_and_orientation_together() -> None:
    data = encode(textured_photo(), "JPEG", exif=exif_with_orientation(6))
    assert decode_image(data, LIMITS, draft_size=224).size == (300, 400)


# An EXIF block whose IFD claims 65535 entries beyond the end of the block.
BROKEN_EXIF = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x01\x12\x00\x03"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_unreadable_exif_does_not_reject_the_picture() -> None:
    decoded = decode_image(encode(picture(), "JPEG", exif=BROKEN_EXIF), LIMITS)
    assert decoded.size == (320, 240)
    assert_colour(colour_at(decoded, *DISC_CENTRE), RED, 40)


@pytest.mark.filterwarnings("error")
def test_warnings_turned_into_errors_still_end_as_invalid_image() -> None:
    # Pillow's "Corrupt EXIF data" warning fires inside Image.open; as an error it aborts the
    # open, so the picture is lost, but cleanly.
    data = encode(picture(), "JPEG", exif=BROKEN_EXIF)
    assert refusal(data).reason is Reason.DECODE_ERROR


# --- transparency --------------------------------------------------------------------------


def _palette_with_transparent_black() -> Image.Image:
    image = Image.new("P", (64, 48), 0)
    image.putpalette([0, 0, 0, *RED])
    image.paste(1, (32, 0, 64, 48))
    return image


def _grey_alpha() -> Image.Image:
    image = Image.new("LA", (64, 48), (0, 0))
    image.paste((90, 255), (32, 0, 64, 48))
    return image


TRANSPARENT = [
    pytest.param(lambda: encode(half_transparent_rgba(), "PNG"), RED, 0, id="png-rgba"),
    pytest.param(lambda: encode(_grey_alpha(), "PNG"), (90, 90, 90), 0, id="png-la"),
    pytest.param(
        lambda: encode(_palette_with_transparent_black(), "PNG", transparency=0),
        RED,
        0,
        id="png-palette-trns",
    ),
    pytest.param(
        lambda: encode(_palette_with_transparent_black(), "GIF", transparency=0),
        RED,
        0,
        id="gif-transparent-index",
    ),
    pytest.param(
        lambda: encode(half_transparent_rgba(), "WEBP", lossless=True), RED, 0, id="webp-rgba"
    ),
    pytest.param(lambda: encode(half_transparent_rgba(), "TIFF"), RED, 0, id="tiff-rgba"),
    pytest.param(
        lambda: encode(half_transparent_rgba(), "AVIF", quality=95), RED, 12, id="avif-rgba"
    ),
    pytest.param(
        lambda: encode(Image.new("RGB", (64, 48)), "PNG", transparency=(0, 0, 0)),
        WHITE,
        0,
        id="png-rgb-colour-key",
    ),
]


@pytest.mark.parametrize(("make", "opaque", "tolerance"), TRANSPARENT)
def test_transparent_pixels_come_out_white(
    make: Callable[[], bytes], opaque: Colour, tolerance: int
) -> None:
    decoded = decode_image(make(), LIMITS)
    assert decoded.mode == "RGB"
    assert_colour(colour_at(decoded, 0.2, 0.5), WHITE, tolerance)  # was (0, 0, 0, alpha 0)
    assert_colour(colour_at(decoded, 0.8, 0.5), opaque, tolerance)


def test_half_transparent_pixels_blend_with_white() -> None:
    data = encode(Image.new("RGBA", (8, 8), (255, 0, 0, 128)), "PNG")
    assert_colour(colour_at(decode_image(data, LIMITS), 0.5, 0.5), (255, 127, 127), 1)


def _palette_alpha() -> Image.Image:
    image = _palette_with_transparent_black().convert("PA")
    alpha = Image.new("L", image.size, 0)
    alpha.paste(255, (32, 0, 64, 48))
    image.putalpha(alpha)
    return image


@pytest.mark.parametrize(
    ("make", "opaque"),
    [
        pytest.param(_palette_alpha, RED, id="PA"),
        pytest.param(lambda: half_transparent_rgba().convert("RGBa"), RED, id="RGBa"),
        pytest.param(lambda: _grey_alpha().convert("La"), (90, 90, 90), id="La"),
    ],
)
def test_to_rgb_composites_in_memory_alpha_modes_on_white(
    make: Callable[[], Image.Image], opaque: Colour
) -> None:
    converted = to_rgb(make())
    assert_colour(colour_at(converted, 0.2, 0.5), WHITE)
    assert_colour(colour_at(converted, 0.8, 0.5), opaque)


# --- animated images: first frame ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        pytest.param("GIF", {}, id="gif"),
        pytest.param("PNG", {}, id="apng"),
        pytest.param("WEBP", {"lossless": True}, id="webp"),
        pytest.param("TIFF", {}, id="multipage-tiff"),
    ],
)
def test_animated_images_give_their_first_frame(fmt: str, params: dict[str, Any]) -> None:
    first, *rest = animated([RED, GREEN, BLUE])
    data = encode(first, fmt, save_all=True, append_images=rest, **params)
    with Image.open(io.BytesIO(data)) as opened:
        assert getattr(opened, "n_frames", 1) == 3
    assert_colour(colour_at(decode_image(data, LIMITS), 0.5, 0.5), RED)


# --- hostile input -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """Bytes that must be refused, and the reason they must be refused with."""

    make: Callable[[], bytes]
    reason: InvalidImageReason
    limits: ImageLimits = field(default_factory=ImageLimits)


def _random_bytes() -> bytes:
    return np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def _png_with_flipped_ihdr_byte() -> bytes:
    data = bytearray(encode(picture(), "PNG"))
    data[20] ^= 0xFF  # inside IHDR's data, so its CRC no longer matches
    return bytes(data)


def _jpeg_with_garbage_after_soi() -> bytes:
    return b"\xff\xd8\xff" + _random_bytes()


def _png_with_garbage_pixels() -> bytes:
    data = encode(Image.new("RGB", (64, 48), GREEN), "PNG")
    start = data.index(b"IDAT") + 4
    return data[:start] + b"\x00" * 8 + data[start + 8 :]


HOSTILE = [
    pytest.param(Hostile(lambda: b"", Reason.EMPTY), id="zero-bytes"),
    pytest.param(
        Hostile(
            lambda: encode(picture(), "PNG"), Reason.TOO_MANY_BYTES, ImageLimits(max_bytes=999)
        ),
        id="more-than-max-bytes",
    ),
    pytest.param(Hostile(lambda: b"just some text\n" * 20, Reason.NOT_AN_IMAGE), id="text"),
    pytest.param(
        Hostile(lambda: b"<!DOCTYPE html><html><body>404</body></html>", Reason.NOT_AN_IMAGE),
        id="html-error-page",
    ),
    pytest.param(Hostile(lambda: b'{"error": "not found"}', Reason.NOT_AN_IMAGE), id="json"),
    pytest.param(Hostile(lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", Reason.NOT_AN_IMAGE), id="pdf"),
    pytest.param(
        Hostile(lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', Reason.NOT_AN_IMAGE),
        id="svg",
    ),
    pytest.param(Hostile(_random_bytes, Reason.NOT_AN_IMAGE), id="random-bytes"),
    pytest.param(
        Hostile(lambda: encode(picture(), "EPS"), Reason.NOT_AN_IMAGE), id="eps-not-allowed"
    ),
    pytest.param(
        Hostile(
            lambda: truncated(
                encode(picture(), "JPEG2000", quality_mode="dB", quality_layers=[40])
            ),
            Reason.DECODE_ERROR,
        ),
        id="truncated-jpeg2000",
    ),
    pytest.param(
        Hostile(lambda: truncated(encode(picture(), "JPEG")), Reason.TRUNCATED),
        id="truncated-jpeg",
    ),
    pytest.param(
        Hostile(
            lambda: truncated(encode(picture(), "JPEG", progressive=True), 0.8), Reason.TRUNCATED
        ),
        id="truncated-progressive-jpeg",
    ),
    pytest.param(
        Hostile(lambda: truncated(encode(picture(), "PNG")), Reason.TRUNCATED),
        id="truncated-png",
    ),
    pytest.param(
        Hostile(lambda: truncated(encode(picture(), "GIF")), Reason.TRUNCATED),
        id="truncated-gif",
    ),
    pytest.param(
        Hostile(lambda: truncated(encode(picture(), "BMP")), Reason.TRUNCATED),
        id="truncated-bmp",
    ),
    pytest.param(
        Hostile(lambda: truncated(encode(picture(), "WEBP")), Reason.TRUNCATED),
        id="truncated-webp",
    ),
    pytest.param(
        Hostile(lambda: png_claiming_size(100_000, 100_000), Reason.DECOMPRESSION_BOMB),
        id="png-header-100000x100000",
    ),
    pytest.param(
        Hostile(
            lambda: encode(picture(320, 240), "PNG"),
            Reason.DECOMPRESSION_BOMB,
            ImageLimits(max_pixels=320 * 240 - 1),
        ),
        id="over-max-pixels",
    ),
    pytest.param(
        Hostile(png_with_iccp_zlib_bomb, Reason.DECOMPRESSION_BOMB), id="png-iccp-zlib-bomb"
    ),
    pytest.param(
        Hostile(lambda: encode(Image.new("RGB", (1, 5000)), "PNG"), Reason.BAD_ASPECT_RATIO),
        id="aspect-1x5000",
    ),
    pytest.param(
        Hostile(lambda: encode(Image.new("RGB", (5000, 1)), "JPEG"), Reason.BAD_ASPECT_RATIO),
        id="aspect-5000x1",
    ),
    pytest.param(
        Hostile(lambda: png_claiming_size(0, 10), Reason.DECODE_ERROR), id="png-zero-width"
    ),
    pytest.param(
        Hostile(_png_with_flipped_ihdr_byte, Reason.DECODE_ERROR), id="png-header-crc-mismatch"
    ),
    pytest.param(
        Hostile(_png_with_garbage_pixels, Reason.DECODE_ERROR), id="png-corrupt-pixel-data"
    ),
    pytest.param(
        Hostile(_jpeg_with_garbage_after_soi, Reason.DECODE_ERROR), id="jpeg-garbage-header"
    ),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_is_refused_with_its_reason(case: Hostile) -> None:
    data = case.make()
    assert refusal(data, case.limits).reason is case.reason
    # The model path refuses it the same way, draft or not.
    for jpeg_draft in (True, False):
        with pytest.raises(InvalidImage) as caught:
            load_for_model(data, Preprocessing(), case.limits, jpeg_draft=jpeg_draft)
        assert caught.value.reason is case.reason


@pytest.mark.parametrize(
    "pillow_limit",
    [pytest.param(Image.MAX_IMAGE_PIXELS, id="pillow-guard-on"), pytest.param(None, id="off")],
)
def test_bomb_header_is_refused_before_any_pixel_is_decoded(
    monkeypatch: pytest.MonkeyPatch, pillow_limit: int | None
) -> None:
    # With Pillow's own guard switched off (by some other library), ours still holds.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    started = time.perf_counter()
    assert refusal(png_claiming_size(100_000, 100_000)).reason is Reason.DECOMPRESSION_BOMB
    assert time.perf_counter() - started < 0.5


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "side",
    [
        pytest.param(40, id="pillow-warning-as-error"),  # 1600 pixels: over 1000, under 2000
        pytest.param(50, id="pillow-error"),  # 2500 pixels: over twice the limit
    ],
)
def test_pillow_own_bomb_guard_is_reported_as_a_bomb(
    monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    # Another part of the process may have tightened Pillow's guard below our limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = encode(Image.new("RGB", (side, side), GREEN), "PNG")
    refused = refusal(data)
    assert refused.reason is Reason.DECOMPRESSION_BOMB
    assert "Pillow" in refused.message


def test_limits_are_checked_on_the_header_size_before_draft() -> None:
    # The draft would only decode 400x300, but the file is 1600x1200: that is what counts.
    data = encode(textured_photo(), "JPEG")
    limits = ImageLimits(max_pixels=1_000_000)
    assert refusal(data, limits, draft_size=224).reason is Reason.DECOMPRESSION_BOMB


@pytest.mark.parametrize(
    ("size", "limits", "accepted"),
    [
        pytest.param((100, 50), ImageLimits(max_pixels=5000), True, id="exactly-max-pixels"),
        pytest.param((20, 1), ImageLimits(max_aspect_ratio=20), True, id="exactly-max-ratio"),
        pytest.param((21, 1), ImageLimits(max_aspect_ratio=20), False, id="just-over-ratio"),
        pytest.param((1, 21), ImageLimits(max_aspect_ratio=20), False, id="tall-over-ratio"),
    ],
)
def test_limit_boundaries(size: tuple[int, int], limits: ImageLimits, accepted: bool) -> None:
    data = encode(Image.new("RGB", size, GREEN), "PNG")
    if accepted:
        assert decode_image(data, limits).size == size
    else:
        assert refusal(data, limits).reason is Reason.BAD_ASPECT_RATIO


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(truncated(encode(picture(), "JPEG")), id="jpeg"),
        pytest.param(truncated(encode(picture(), "PNG")), id="png"),
        pytest.param(truncated(encode(picture(), "GIF")), id="gif"),
        pytest.param(truncated(encode(picture(), "BMP")), id="bmp"),
        pytest.param(truncated(encode(picture(), "TIFF")), id="tiff"),
    ],
)
def test_truncation_is_caught_even_when_pillow_is_told_to_ignore_it(
    monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    # Some library in the process may set this global; it must not let grey-padded halves in.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert refusal(data).reason is Reason.TRUNCATED


def test_decoding_leaves_pillow_globals_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    decode_image(encode(textured_photo(), "JPEG"), LIMITS, draft_size=224)
    refusal(png_claiming_size(100_000, 100_000))
    refusal(truncated(encode(picture(), "PNG")))
    after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert after == before


# --- fuzzing: no other exception type, no hang ---------------------------------------------


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    mutated = bytearray(data)
    operation = int(rng.integers(0, 6))
    if operation == 0:  # flip a few random bytes
        for _ in range(int(rng.integers(1, 10))):
            mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
    elif operation == 1:  # cut the tail
        del mutated[int(rng.integers(1, len(mutated))) :]
    elif operation == 2:  # insert random bytes
        at = int(rng.integers(0, len(mutated)))
        mutated[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif operation == 3:  # extreme values in the header (sizes, lengths, counts)
        at = int(rng.integers(0, min(len(mutated), 200)))
        for offset in range(int(rng.integers(1, 4))):
            if at + offset < len(mutated):
                mutated[at + offset] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF]))
    elif operation == 4:  # delete a slice
        start = int(rng.integers(0, len(mutated)))
        del mutated[start : int(rng.integers(start, len(mutated)))]
    else:  # duplicate a slice
        start = int(rng.integers(0, len(mutated)))
        end = min(len(mutated), start + int(rng.integers(1, 500)))
        mutated[end:end] = mutated[start:end]
    return bytes(mutated)


FUZZ_SEEDS = {
    "jpeg": lambda: encode(picture(96, 64), "JPEG", exif=exif_with_orientation(6)),
    "png": lambda: encode(half_transparent_rgba(96, 64), "PNG"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "warning_filter", ["ignore", "error"], ids=["warnings-ignored", "warnings-as-errors"]
)
@pytest.mark.parametrize("seed_format", list(FUZZ_SEEDS))
def test_mutated_images_decode_or_raise_invalid_image(
    seed_format: str, warning_filter: Literal["ignore", "error"]
) -> None:
    original = FUZZ_SEEDS[seed_format]()
    rng = np.random.default_rng(20240601)
    outcomes: Counter[str] = Counter()
    with warnings.catch_warnings():
        # Pillow warns about corrupt metadata; as errors they must still become InvalidImage.
        warnings.simplefilter(warning_filter)
        for case in range(100):
            data = _mutate(original, rng)
            try:
                image = decode_image(data, LIMITS, draft_size=32 if case % 2 else None)
            except InvalidImage as error:
                outcomes[error.reason.value] += 1
            else:
                assert image.mode == "RGB"
                assert image.width > 0
                assert image.height > 0
                outcomes["decoded"] += 1
    # Both paths were exercised, and refusals were told apart.
    assert outcomes["decoded"] > 0
    assert len(outcomes) >= 3, outcomes


# --- preprocess ----------------------------------------------------------------------------

SEED_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
SEED_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def seed_001_preprocess(image: Image.Image) -> npt.NDArray[np.float32]:
    """The reference DINOv2 ONNX preprocessing, verbatim: what our default must reproduce."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize((224, 224), Image.Resampling.BILINEAR)
    img_array = np.asarray(image, dtype=np.float32) / 255.0
    img_array = (img_array - SEED_MEAN) / SEED_STD
    img_array = np.transpose(img_array, (2, 0, 1))
    return np.expand_dims(img_array, axis=0)


def test_default_preprocessing_equals_seed_001() -> None:
    image = picture(333, 250)
    expected = seed_001_preprocess(image)[0]
    np.testing.assert_allclose(preprocess(image, Preprocessing()), expected, rtol=0, atol=1e-6)


def test_load_for_model_equals_seed_001_on_lossless_bytes() -> None:
    image = picture(333, 250)
    tensor = load_for_model(encode(image, "PNG"), Preprocessing(), LIMITS)
    np.testing.assert_allclose(tensor, seed_001_preprocess(image)[0], rtol=0, atol=1e-6)


def test_preprocess_output_layout() -> None:
    tensor = preprocess(picture(), Preprocessing())
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == np.float32
    assert tensor.flags.c_contiguous


def test_preprocess_values_for_a_solid_colour() -> None:
    tensor = preprocess(Image.new("RGB", (50, 70), (255, 0, 128)), Preprocessing())
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for channel, value in enumerate(expected):
        np.testing.assert_allclose(tensor[channel], value, rtol=0, atol=1e-5)


def test_preprocess_follows_size_mean_and_std_of_the_spec() -> None:
    spec = Preprocessing(input_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tensor = preprocess(Image.new("RGB", (50, 70), (51, 102, 204)), spec)
    assert tensor.shape == (3, 32, 32)
    np.testing.assert_allclose(tensor[:, 5, 5], [0.2, 0.4, 0.8], rtol=0, atol=1e-6)


def test_preprocess_puts_transparent_input_on_white() -> None:
    tensor = preprocess(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), Preprocessing())
    white = (1.0 - SEED_MEAN) / SEED_STD
    np.testing.assert_allclose(tensor[:, 100, 100], white, rtol=0, atol=1e-6)


def _stripes(width: int, height: int) -> Image.Image:
    """Red | green | blue columns; green covers the middle 60 % of the width."""
    image = Image.new("RGB", (width, height), GREEN)
    image.paste(RED, (0, 0, width // 5, height))
    image.paste(BLUE, (width - width // 5, 0, width, height))
    return image


def test_shortest_side_crop_keeps_the_aspect_and_the_centre() -> None:
    spec = Preprocessing(resize=ResizeMode.SHORTEST_SIDE_CROP)
    cropped = preprocess(_stripes(400, 200), spec)
    squashed = preprocess(_stripes(400, 200), Preprocessing())
    green = (np.array(GREEN) / 255.0 - SEED_MEAN) / SEED_STD
    red = (np.array(RED) / 255.0 - SEED_MEAN) / SEED_STD

    # Resized to 448x224, the crop keeps x in [112, 336): green only.
    np.testing.assert_allclose(cropped[:, :, 0], np.tile(green[:, None], 224), atol=1e-5)
    np.testing.assert_allclose(cropped[:, :, -1], np.tile(green[:, None], 224), atol=1e-5)
    # Squashing keeps the whole width: the red stripe is still there.
    np.testing.assert_allclose(squashed[:, :, 0], np.tile(red[:, None], 224), atol=1e-5)


@pytest.mark.parametrize(
    ("size", "resample", "resized", "box"),
    [
        pytest.param((300, 200), Resample.BILINEAR, (336, 224), (56, 0), id="landscape-bilinear"),
        pytest.param((225, 301), Resample.BICUBIC, (224, 299), (0, 38), id="portrait-bicubic"),
        pytest.param((100, 100), Resample.BILINEAR, (224, 224), (0, 0), id="square-upscaled"),
    ],
)
def test_shortest_side_crop_matches_torchvision_arithmetic(
    size: tuple[int, int],
    resample: Resample,
    resized: tuple[int, int],
    box: tuple[int, int],
) -> None:
    image = picture(*size)
    spec = Preprocessing(resize=ResizeMode.SHORTEST_SIDE_CROP, resample=resample)
    filters = {
        Resample.BILINEAR: Image.Resampling.BILINEAR,
        Resample.BICUBIC: Image.Resampling.BICUBIC,
    }
    left, top = box
    pixels = np.asarray(image.resize(resized, filters[resample]), dtype=np.float32)
    pixels = pixels[top : top + 224, left : left + 224] / 255.0
    expected = ((pixels - SEED_MEAN) / SEED_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(image, spec), expected, rtol=0, atol=1e-6)


# --- JPEG draft ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    return encode(textured_photo(1600, 1200), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("draft_size", "expected"),
    [
        pytest.param(None, (1600, 1200), id="no-draft"),
        pytest.param(100, (200, 150), id="draft-100-scale-8"),
        pytest.param(224, (400, 300), id="draft-224-scale-4"),
        pytest.param(518, (800, 600), id="draft-518-scale-2"),
        pytest.param(1300, (1600, 1200), id="draft-larger-than-image"),
    ],
)
def test_jpeg_draft_decodes_smaller_but_never_below_the_draft_size(
    photo_jpeg: bytes, draft_size: int | None, expected: tuple[int, int]
) -> None:
    decoded = decode_image(photo_jpeg, LIMITS, draft_size=draft_size)
    assert decoded.size == expected
    assert decoded.mode == "RGB"


def test_exact_decode_turns_the_draft_off(photo_jpeg: bytes) -> None:
    exact = LIMITS.model_copy(update={"exact_decode": True})
    assert decode_image(photo_jpeg, exact, draft_size=224).size == (1600, 1200)
    spec = Preprocessing()
    full = load_for_model(photo_jpeg, spec, LIMITS, jpeg_draft=False)
    np.testing.assert_array_equal(load_for_model(photo_jpeg, spec, exact), full)


def test_the_default_draft_keeps_three_times_the_model_input(photo_jpeg: bytes) -> None:
    # 1600 x 1200 with a 3 x 224 = 672 draft: libjpeg may only halve it (800 x 600 >= 672? no),
    # so the photo decodes at full size; a 224 draft alone would have taken it to 400 x 300.
    assert draft_size_for([Preprocessing()]) == 672
    assert decode_image(photo_jpeg, LIMITS, draft_size=draft_size_for([Preprocessing()])).size == (
        1600,
        1200,
    )


def test_draft_applies_to_mpo_camera_jpegs() -> None:
    # Cameras write JPEGs with an extra (MPF) image; Pillow opens them as MPO, a JPEG subclass.
    photo = textured_photo()
    data = encode(photo, "MPO", save_all=True, append_images=[photo])
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.format == "MPO"
    assert decode_image(data, LIMITS, draft_size=224).size == (400, 300)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_formats_are_reduced_after_decoding_to_the_draft_size(fmt: str) -> None:
    data = encode(picture(800, 600), fmt)
    # 600 // 100 = 6: both sides keep at least the draft size.
    assert decode_image(data, LIMITS, draft_size=100).size == (134, 100)  # 800 / 6 rounded up
    assert decode_image(data, LIMITS, draft_size=400).size == (800, 600)  # factor 1: untouched
    assert decode_image(data, LIMITS).size == (800, 600)
    exact = LIMITS.model_copy(update={"exact_decode": True})
    assert decode_image(data, exact, draft_size=100).size == (800, 600)


def test_a_reduced_transparent_picture_keeps_its_white_backdrop_at_the_edges() -> None:
    rgba = Image.new("RGBA", (1200, 1200), (0, 0, 0, 0))  # hidden colour: black
    rgba.paste((200, 30, 30, 255), (0, 603, 1200, 1200))  # row 100 of the reduced: half red
    decoded = decode_image(encode(rgba, "PNG"), LIMITS, draft_size=200)
    assert decoded.size == (200, 200)
    assert_colour(colour_at(decoded, 0.5, 99 / 200), (255, 255, 255), 2)
    # Half red on white: the black hidden under the transparent half does not bleed in.
    assert_colour(colour_at(decoded, 0.5, 100 / 200), (228, 142, 142), 3)
    assert_colour(colour_at(decoded, 0.5, 101 / 200), (200, 30, 30), 2)


def test_draft_and_full_decode_give_nearly_the_same_tensor(photo_jpeg: bytes) -> None:
    spec = Preprocessing()
    with_draft = load_for_model(photo_jpeg, spec, LIMITS, jpeg_draft=True).ravel()
    without = load_for_model(photo_jpeg, spec, LIMITS, jpeg_draft=False).ravel()
    cosine = float(with_draft @ without / np.linalg.norm(with_draft) / np.linalg.norm(without))
    # Measured on this picture: cosine 0.99996, max |diff| 0.17, mean |diff| 0.005.
    assert cosine > 0.99
    assert float(np.abs(with_draft - without).max()) < 0.5
    assert float(np.abs(with_draft - without).mean()) < 0.02
