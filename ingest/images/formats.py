"""Which image formats Lookalike decodes, in which order, and how each one's bytes begin."""

from __future__ import annotations

from typing import Final

import pillow_heif
from PIL import Image, ImageFile

# HEIF/HEIC (phones) come from pillow-heif; Pillow 11.3+ reads AVIF itself and pillow-heif 1.x
# no longer ships an AVIF opener, so registering HEIF is all that is needed.
pillow_heif.register_heif_opener()
Image.init()

# Every still-image format the installed Pillow (and pillow-heif) can decode may claim the
# bytes, tried in this order: the common formats first (each has a strict magic number), then
# the rest by name, and TGA last, because it has no magic number and would claim bytes meant
# for another plugin. Left out: stub plugins (BUFR, GRIB, HDF5, WMF: they identify a file but
# need a handler installed to decode it), EPS (Pillow runs the Ghostscript program on it: a
# whole interpreter of attack surface), MPEG (video: Pillow reads its header only) and IPTC
# (a metadata record, not a picture). AVIF before HEIF so that Pillow's own AVIF plugin, not
# libheif, decodes AVIF files.
_FIRST_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")
_LAST_FORMATS: Final = ("TGA",)
_REFUSED_FORMATS: Final = frozenset({"EPS", "MPEG", "IPTC"})
# Decoders that read until the stream is exhausted even for a whole file (openjpeg is handed
# everything there is), so a read past the end says nothing; they report truncation themselves.
READS_TO_THE_END: Final = frozenset({"JPEG2000"})


def _decodable_formats() -> tuple[str, ...]:
    openers = {
        name: factory
        for name, (factory, _accept) in Image.OPEN.items()
        if name not in _REFUSED_FORMATS
        and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))
    }
    middle = sorted(set(openers) - {*_FIRST_FORMATS, *_LAST_FORMATS})
    return tuple(f for f in (*_FIRST_FORMATS, *middle, *_LAST_FORMATS) if f in openers)


SUPPORTED_FORMATS: Final[tuple[str, ...]] = _decodable_formats()

# Magic numbers of the supported formats: bytes that start like an image but cannot be read
# are a broken image (DECODE_ERROR), not "not an image".
SIGNATURES: Final = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
