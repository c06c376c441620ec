"""Uploads from the admin page: image files plus an optional metadata CSV, then a batch to watch.

The CSV is the one ``lookalike ingest --catalog`` reads: an ``item_id`` and an ``image``
column (the uploaded file's name), every other column becomes metadata (numbers stay
numbers). Files without a row are ingested under their file name without its extension.
An upload is checked whole before anything is queued: one bad file refuses all of them, with
a message per file. The event ids of an upload are kept as a batch
(``ingest.state.batches``), so its page can follow the events to done (or failed) after a reload.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from ingest.images.decode import decode_image
from ingest.ingestion.bulk import parse_cell
from schemas.events import UploadEvent
from schemas.settings import Settings
from search_api.admin.problems import problem_of

CHECK_DRAFT_SIZE = 224
ID_COLUMN, IMAGE_COLUMN = "item_id", "image"
MAX_CSV_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class UploadedFile:
    """One file part of the upload form."""

    filename: str
    data: bytes


@dataclass
class UploadPlan:
    """What an upload would queue, or why it cannot be queued."""

    events: list[tuple[UploadEvent, str, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
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
    settings: Settings,
    files: Sequence[UploadedFile],
    catalog: bytes | None,
    blob_put: Any,
) -> UploadPlan:
    """Check every file (and the CSV) and build the events; nothing is queued here."""
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
    checked: list[tuple[str, str, dict[str, Any], bytes]] = []
    for upload in files:
        name = base_name(upload.filename) or "unnamed"
        if not upload.data:
            plan.errors.append(f"{name}: the file is empty.")
            continue
        try:
            decode_image(upload.data, settings.images, draft_size=CHECK_DRAFT_SIZE)
        except Exception as error:
            plan.errors.append(f"{name}: {problem_of(error).message}")
            continue
        row = rows.get(name)
        if row is None:
            item_id = PurePosixPath(name).stem or name
            if catalog:
                plan.notes.append(f"{name} has no CSV row: ingested as item {item_id!r}.")
            checked.append((name, item_id[:500], {}, upload.data))
        else:
            checked.append((name, row[ID_COLUMN].strip()[:500], _metadata(row), upload.data))
    unused = sorted(set(rows) - {base_name(f.filename) for f in files})
    if unused:
        shown = ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else "")
        plan.notes.append(f"{len(unused)} CSV row(s) name images that were not uploaded: {shown}")
    if plan.errors:
        return plan
    # Only a wholly good upload reaches the blob store and the queue.
    for name, item_id, metadata, data in checked:
        event = UploadEvent(item_id=item_id, image_uri=blob_put(data), metadata=metadata)
        plan.events.append((event, name, data))
    return plan
