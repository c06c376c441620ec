"""Factories for test catalogs: distinct pictures, catalog CSVs, messy photo folders."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def distinct_picture(index: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A picture unlike any other index's: its own gradient, shapes and colours."""
    rng = np.random.default_rng(1000 + index)
    width, height = size
    start, end = rng.integers(0, 256, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    x = np.linspace(-1.0, 1.0, width)[None, :]
    y = np.linspace(-1.0, 1.0, height)[:, None]
    t = ((np.cos(angle) * x + np.sin(angle) * y) + 1.5) / 3.0
    pixels = start * (1 - t[..., None]) + end * t[..., None]
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        x1 = x0 + int(rng.integers(30, width // 2))
        y1 = y0 + int(rng.integers(30, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return image


def write_picture(path: Path, index: int) -> Path:
    """Save ``distinct_picture(index)`` in the format the file suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    distinct_picture(index).save(path)
    return path


BRANDS = ("acme", "globex", "initech")
CATEGORIES = ("shoes", "bags")
# Around the 10.0 boundary on purpose: <= must keep 10 and drop 10.01.
PRICES: tuple[float, ...] = (5, 12.5, 8, 30, 9.99, 45, 10, 60, 3.5, 22, 10.01, 75)
CATALOG_SIZE = len(PRICES)
CATALOG_FIELDS = ("item_id", "image", "brand", "category", "product_id", "price", "stock")


def catalog_row(index: int) -> dict[str, str]:
    """Row ``index`` of the standard test catalog (a shop's catalog CSV); two items per product."""
    return {
        "item_id": f"sku-{index:02d}",
        "image": f"{index:02d}.png" if index % 4 == 3 else f"{index:02d}.jpg",
        "brand": BRANDS[index % len(BRANDS)],
        "category": CATEGORIES[index % len(CATEGORIES)],
        "product_id": f"p{index // 2}",
        "price": f"{PRICES[index]:g}",
        "stock": str(index),
    }


def write_csv(
    path: Path, rows: Sequence[Mapping[str, str]], fields: Sequence[str] = CATALOG_FIELDS
) -> Path:
    """A catalog CSV with these columns and rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_catalog(root: Path) -> tuple[Path, Path]:
    """The standard catalog under ``root``: ``catalog.csv`` and its ``images/`` folder."""
    images = root / "images"
    rows = [catalog_row(i) for i in range(CATALOG_SIZE)]
    for index, row in enumerate(rows):
        write_picture(images / row["image"], index)
    return write_csv(root / "catalog.csv", rows), images


GOOD_FOLDER_ITEMS = {
    "top": "top.JPG",
    "shoes/red": "shoes/red.jpg",
    "shoes/blue": "shoes/blue.png",
    "shoes/sale/old": "shoes/sale/old.jpeg",
    "bags/tote": "bags/tote.webp",
}
BAD_FOLDER_ITEMS = {
    "broken/corrupt": "truncated",  # JPEG signature followed by garbage
    "broken/empty": "empty",  # zero-byte .png
    "broken/fake": "not_an_image",  # text in a .jpg
}


def write_photo_folder(root: Path) -> Path:
    """A messy photo folder: nested images, bad images, hidden files and non-image files."""
    for index, name in enumerate(GOOD_FOLDER_ITEMS.values()):
        write_picture(root / name, index)
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 40)
    (root / "broken" / "empty.png").write_bytes(b"")
    (root / "broken" / "fake.jpg").write_text("this is not a picture")
    # Ignored: hidden files and folders (even valid images), and files that are not images.
    write_picture(root / ".hidden.jpg", 10)
    write_picture(root / ".thumbnails" / "top.jpg", 11)
    (root / "notes.txt").write_text("shoot on Monday")
    (root / "shoes" / "prices.csv").write_text("sku,price\n1,2\n")
    (root / "spec-sheet.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    return root
