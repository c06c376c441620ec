"""The README's list of image formats, generated from what the installed Pillow can decode."""

from __future__ import annotations

import re

from ingest.images.decode import SUPPORTED_FORMATS

START, END = "<!-- image-formats -->", "<!-- /image-formats -->"
_BLOCK = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)


def formats_sentence() -> str:
    """Every accepted format, the common ones first, as ``ingest.images.decode`` tries them."""
    return ", ".join(SUPPORTED_FORMATS)


def render_readme(text: str) -> str:
    """``text`` with the block between the markers replaced by the current list."""
    if not _BLOCK.search(text):
        raise ValueError(f"README.md has no {START} ... {END} block to fill in")
    return _BLOCK.sub(f"{START}{formats_sentence()}{END}", text, count=1)
