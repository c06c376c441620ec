"""Labelled image sets to evaluate on: the retrieval folder layouts, or a catalog CSV.

- ``query/`` and ``gallery/`` folders, each with one subfolder per class: queries are looked
  up among the gallery.
- One subfolder per class: split into queries and gallery by a seeded stratified split.
- A catalog CSV with a label column (e.g. ``product_id``): every image is a query against
  all the others, and images sharing a label are relevant to each other.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ingest.errors import LookalikeError
from ingest.ingestion.bulk import image_files

DEFAULT_QUERY_FRACTION = 0.2
DEFAULT_SEED = 0


class EvaluationInputError(LookalikeError):
    """The images to evaluate on are missing, unlabelled or cannot make a benchmark."""


class Role(StrEnum):
    """What an image is in the benchmark."""

    QUERY = "query"
    GALLERY = "gallery"
    BOTH = "both"  # a catalog: every image is looked up among the others


@dataclass(frozen=True)
class LabelledImage:
    """One image file of a benchmark, with its label and role."""

    item_id: str
    path: Path
    label: str
    role: Role


def _classes(folder: Path, role: Role, prefix: str = "") -> list[LabelledImage]:
    """Images of a class-per-subfolder folder, labelled by their subfolder."""
    found = []
    for path in image_files(folder):
        relative = path.relative_to(folder)
        if len(relative.parts) < 2:
            raise EvaluationInputError(
                f"{path} is not in a class subfolder of {folder}: put each class's images in a "
                "folder named after the class"
            )
        item_id = prefix + relative.with_suffix("").as_posix()
        found.append(LabelledImage(item_id, path, relative.parts[0], role))
    return found


def folder_images(
    root: Path, *, query_fraction: float = DEFAULT_QUERY_FRACTION, seed: int = DEFAULT_SEED
) -> list[LabelledImage]:
    """A ``query/`` + ``gallery/`` folder, or a class-per-subfolder folder split by a seed."""
    if not root.is_dir():
        raise EvaluationInputError(f"{root} is not a folder")
    if (root / "query").is_dir() and (root / "gallery").is_dir():
        images = _classes(root / "query", Role.QUERY, "query/") + _classes(
            root / "gallery", Role.GALLERY, "gallery/"
        )
        return _checked(images, root)
    images = _checked(_classes(root, Role.GALLERY), root)
    return _split(images, query_fraction=query_fraction, seed=seed)


def _split(images: list[LabelledImage], *, query_fraction: float, seed: int) -> list[LabelledImage]:
    """A seeded split stratified by label; a class with one image stays in the gallery."""
    counts = Counter(image.label for image in images)
    splittable = [image for image in images if counts[image.label] >= 2]
    alone = [image for image in images if counts[image.label] < 2]
    classes = len({image.label for image in splittable})
    if classes == 0:
        raise EvaluationInputError("every class has one image: nothing to look for")
    # At least one query per class, and at least one gallery image per class.
    queries = max(classes, round(query_fraction * len(splittable)))
    queries = min(queries, len(splittable) - classes)
    # Imported here: scikit-learn takes most of a second to import, and every `lookalike`
    # command (and the web app) imports this module; only a class-per-folder split needs it.
    from sklearn.model_selection import train_test_split

    gallery, query = train_test_split(
        splittable,
        test_size=queries,
        stratify=[image.label for image in splittable],
        random_state=seed,
    )
    return (
        [_with_role(image, Role.QUERY) for image in query]
        + [_with_role(image, Role.GALLERY) for image in gallery]
        + alone
    )


def _with_role(image: LabelledImage, role: Role) -> LabelledImage:
    return LabelledImage(image.item_id, image.path, image.label, role)


def catalog_images(
    csv_path: Path,
    images_dir: Path,
    *,
    label_column: str,
    id_column: str = "item_id",
    image_column: str = "image",
) -> list[LabelledImage]:
    """The rows of a catalog CSV, labelled by ``label_column`` (images sharing it match)."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in (id_column, image_column, label_column) if c not in columns]
        if missing:
            raise EvaluationInputError(
                f"{csv_path} has no column {', '.join(missing)}; its columns are "
                f"{', '.join(columns) or 'none'} (choose with --label / --id-column / "
                "--image-column)"
            )
        images = []
        for line, row in enumerate(reader, start=2):
            item_id, image, label = (
                (row.get(column) or "").strip()
                for column in (id_column, image_column, label_column)
            )
            if not (item_id and image and label):
                raise EvaluationInputError(f"{csv_path} line {line}: empty id, image or label")
            images.append(LabelledImage(item_id, images_dir / image, label, Role.BOTH))
    return _checked(images, csv_path)


def _checked(images: list[LabelledImage], where: Path) -> list[LabelledImage]:
    if not images:
        raise EvaluationInputError(f"no images found in {where}")
    if len({image.label for image in images}) < 2:
        raise EvaluationInputError(
            f"{where} has one label only: a benchmark needs at least two, so that there is "
            "something to tell apart"
        )
    return images
