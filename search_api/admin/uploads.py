"""Uploads from the admin page: image files plus an optional metadata CSV, then a batch to watch.

The CSV is the one ``lookalike ingest --catalog`` reads: an ``item_id`` and an ``image``
column (the uploaded file's name), every other column becomes metadata (numbers stay
numbers). Files without a row are ingested under their file name without its extension,
unless two would then share an item id (``photo.jpg`` and ``photo.png``): those keep their
suffix, with a note, as in folder ingestion (``ingest.ingestion.item_ids``).

The images are then answered one by one on the path the API's ``POST /api/v1/uploads`` takes
(``search_api.producer.uploads``): the good ones are queued, a bad one is refused with its
reason and does not hold the others back. A CSV that cannot be read, or too many files, is
the request's own fault: nothing is uploaded (its metadata would be silently lost otherwise).
The event ids of an upload, and its refused files, are kept as a batch
(``ingest.state.batches``), so its page can follow the events to done (or failed) after a reload.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from ingest.ingestion.bulk import parse_cell
from ingest.ingestion.item_ids import name_item_ids
from schemas.settings import Settings
from search_api.producer.uploads import UploadImage

ID_COLUMN, IMAGE_COLUMN = "item_id", "image"
MAX_CSV_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class UploadedFile:
    """One file part of the upload form."""

    filename: str
    data: bytes


@dataclass
class UploadPlan:
    """The images an upload offers (each with its file name), or why it cannot be uploaded."""

    images: list[UploadImage] = field(default_factory=list)
    filenames: list[str] = field(default_factory=list)  # by image index
    errors: list[str] = field(default_factory=list)  # the request's own: nothing is uploaded
    notes: list[str] = field(default_factory=list)


def base_name(filename: str) -> str:
    """The file's own name, whichever separator the browser's OS used."""
    return PureWindowsPath(PurePosixPath(filename).name).name.strip()


def read_catalog(data: bytes) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Rows of a metadata CSV by image file name, and the problems found in it."""
    if len(data) > MAX_CSV_BYTES:
        return {}, [f"The CSV is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB."]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return {}, ["The CSV is not UTF-8 text."]
    reader = csv.DictReader(io.StringIO(text))
    missing = {ID_COLUMN, IMAGE_COLUMN} - set(reader.fieldnames or [])
    if missing:
        return {}, [
            f"The CSV lacks the column(s) {', '.join(sorted(missing))}; its columns are "
            f"{', '.join(reader.fieldnames or []) or 'none'}."
        ]
    rows: dict[str, dict[str, str]] = {}
    problems = []
    try:
        for line, row in enumerate(reader, start=2):
            image = base_name(row.get(IMAGE_COLUMN) or "")
            item_id = (row.get(ID_COLUMN) or "").strip()
            if not image or not item_id:
                problems.append(f"CSV line {line}: empty {ID_COLUMN if image else IMAGE_COLUMN}.")
                continue
            rows[image] = row
    except csv.Error as error:
        problems.append(f"The CSV cannot be read: {error}.")
    return rows, problems


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: parse_cell(value.strip())
        for key, value in row.items()
        if key not in (ID_COLUMN, IMAGE_COLUMN, None) and isinstance(value, str) and value.strip()
    }


def plan_upload(
    settings: Settings, files: Sequence[UploadedFile], catalog: bytes | None
) -> UploadPlan:
    """Name every file's item (from the CSV, else its file name); nothing is checked or queued
    here beyond the request itself: each image is answered by ``queue_uploads``."""
    plan = UploadPlan()
    if not files:
        plan.errors.append("Choose one or more image files to upload.")
        return plan
    maximum = settings.api.max_images_per_request
    if len(files) > maximum:
        plan.errors.append(
            f"{len(files)} files in one upload; at most {maximum} "
            "(LOOKALIKE_API__MAX_IMAGES_PER_REQUEST): upload them in parts."
        )
        return plan
    rows: dict[str, dict[str, str]] = {}
    if catalog:
        rows, problems = read_catalog(catalog)
        plan.errors += problems
    if plan.errors:
        return plan
    plan.filenames = [base_name(upload.filename) or "unnamed" for upload in files]
    by_name = [name for name in plan.filenames if name not in rows]
    named = name_item_ids(by_name)
    for index, (name, upload) in enumerate(zip(plan.filenames, files, strict=True)):
        row = rows.get(name)
        if row is not None:
            item = UploadImage(index, row[ID_COLUMN].strip()[:500], upload.data, _metadata(row))
        else:
            item_id = named[name].item_id[:500]
            item = UploadImage(index, item_id, upload.data)
            if catalog:
                plan.notes.append(f"{name} has no CSV row: ingested as item {item_id!r}.")
        plan.images.append(item)
    kept = (named[name].note for name in dict.fromkeys(by_name))
    plan.notes += [f"{note}." for note in kept if note is not None]
    unused = sorted(set(rows) - set(plan.filenames))
    if unused:
        shown = ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else "")
        plan.notes.append(f"{len(unused)} CSV row(s) name images that were not uploaded: {shown}")
    return plan
