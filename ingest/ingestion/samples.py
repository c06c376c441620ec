"""A small sample catalog built offline from the freely licensed photos bundled with scikit-image.

Each photo becomes a product with metadata (brand, category, price) plus a few synthetic
near-duplicates (crop, resize, re-encode, flip) sharing its ``product_id``, so similarity,
group-by and duplicate features all have something to show. Needs the `demo` extra.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from ingest.errors import LookalikeError

# photo file in skimage's data dir -> (category, brand)
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut.png": ("people", "acme"),
    "coffee.png": ("food", "globex"),
    "chelsea.png": ("animals", "initech"),
    "rocket.jpg": ("space", "acme"),
    "hubble_deep_field.jpg": ("space", "globex"),
    "motorcycle_left.png": ("vehicles", "initech"),
    "retina.jpg": ("science", "umbrella"),
    "ihc.png": ("science", "umbrella"),
    "logo.png": ("logos", "acme"),
    "color.png": ("textures", "globex"),
    "brick.png": ("textures", "initech"),
    "grass.png": ("textures", "umbrella"),
    "gravel.png": ("textures", "acme"),
    "camera.png": ("people", "globex"),
    "coins.png": ("objects", "initech"),
    "moon.png": ("space", "umbrella"),
    "page.png": ("documents", "acme"),
    "text.png": ("documents", "globex"),
    "horse.png": ("animals", "umbrella"),
    "chessboard_RGB.png": ("objects", "initech"),
}

Variant = Callable[[Image.Image], Image.Image]


def _crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.crop((width // 10, height // 10, width - width // 10, height - height // 10))


def _small(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)))


def _flip(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def _brighter(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(1.25)


# Near-duplicates stored in the catalog: (suffix, transform, JPEG quality).
VARIANTS: tuple[tuple[str, Variant, int], ...] = (
    ("crop", _crop, 90),
    ("small", _small, 90),
    ("jpeg40", lambda image: image, 40),
    ("flip", _flip, 90),
)
# Products that get near-duplicates, and held-out query images that are not in the catalog.
WITH_VARIANTS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "retina")


def _skimage_data_dir() -> Path:
    try:
        from skimage import data
    except ImportError as error:
        raise LookalikeError(
            "the sample catalog needs scikit-image: pip install 'lookalike[demo]'"
        ) from error
    return Path(data.data_dir)


def _save(image: Image.Image, path: Path, quality: int) -> None:
    if path.suffix == ".png":
        image.save(path)
    else:
        image.convert("RGB").save(path, quality=quality)


def build_sample_catalog(target: Path) -> Path:
    """Write ``images/``, ``queries/`` and ``items.csv`` under ``target``; returns the CSV path."""
    source_dir = _skimage_data_dir()
    images_dir, queries_dir = target / "images", target / "queries"
    images_dir.mkdir(parents=True, exist_ok=True)
    queries_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for index, (filename, (category, brand)) in enumerate(sorted(PHOTOS.items())):
        product = Path(filename).stem
        with Image.open(source_dir / filename) as opened:
            photo = opened.copy()
        # The logo keeps its transparency: it exercises compositing onto white.
        suffix = ".png" if photo.mode in ("RGBA", "LA", "P") else ".jpg"
        entries = [(product, photo, 90)]
        if product in WITH_VARIANTS:
            entries += [(f"{product}-{name}", make(photo), q) for name, make, q in VARIANTS]
            _save(_brighter(_crop(photo)), queries_dir / f"{product}-query.jpg", 90)
        for item_id, image, quality in entries:
            image_name = f"{item_id}{suffix}"
            _save(image, images_dir / image_name, quality)
            rows.append(
                {
                    "item_id": item_id,
                    "image": image_name,
                    "product_id": product,
                    "brand": brand,
                    "category": category,
                    "price": round(9.99 + 7.5 * index, 2),
                }
            )
    csv_path = target / "items.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path
