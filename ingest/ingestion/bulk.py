"""Bulk ingestion of a folder of images or a catalog CSV, batched and resumable."""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from ingest.errors import InvalidImage, InvalidImageReason
from ingest.images.blobs import BlobStore
from ingest.images.decode import SUPPORTED_FORMATS, read_image_file, sha256_hex
from ingest.images.thumbnails import DEFAULT_THUMBNAIL_SIZE, ThumbnailStore
from ingest.ingestion.item_ids import folder_item_ids
from ingest.ingestion.pipeline import (
    ImageJob,
    PreparedImage,
    embed_and_store,
    prepare_images,
    store_thumbnail,
)
from ingest.models.runtime import ModelRuntime
from ingest.store.base import VectorStore, point_id
from schemas.events import UploadEvent
from schemas.ingestion import IngestFailure, IngestSummary
from schemas.models import Preprocessing
from schemas.settings import ImageLimits

BAD_ROW = "bad_row"

_CODE_WITH_LEADING_ZERO = re.compile(r"[+-]?0\d")


@dataclass(frozen=True)
class SourceImage:
    """An image to ingest from disk, or a catalog row that is already known to be bad.

    ``note`` is something to tell the user about it, e.g. that its item id kept the file's
    suffix because another file would have had the same one.
    """

    job: ImageJob | None
    path: Path | None
    failure: IngestFailure | None = None
    note: str | None = None


def image_extensions() -> set[str]:
    """File extensions Pillow (with pillow-heif) can open, e.g. ``.jpg``, ``.webp``, ``.heic``."""
    Image.init()
    # registered_extensions() also lists save-only formats (.pdf, .palm); MPO files are
    # multi-picture JPEGs, opened by the JPEG plugin.
    return {
        extension
        for extension, kind in Image.registered_extensions().items()
        if kind in SUPPORTED_FORMATS or kind == "MPO"
    }


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursively, hidden files and folders skipped), sorted."""
    extensions = image_extensions()
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in extensions
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def folder_sources(root: Path) -> list[SourceImage]:
    """Every image file under ``root`` (recursively); item id = relative path without suffix,
    except for files that would share one (``photo.jpg``, ``photo.png``): they keep it."""
    paths = image_files(root)
    named = folder_item_ids(root, paths)
    return [
        SourceImage(
            job=ImageJob(item_id=named[path].item_id, source_uri=path.resolve().as_uri()),
            path=path,
            note=named[path].note,
        )
        for path in paths
    ]


def parse_cell(value: str) -> Any:
    """A CSV cell or CLI value as int, float or text: numbers must stay numbers for ranges."""
    # Python also reads "nan", "Infinity", "2024_01" and "007" as numbers: in a catalog those
    # are words and codes (a brand, a SKU, a barcode), and a code loses its leading zeros.
    if "_" in value or _CODE_WITH_LEADING_ZERO.match(value):
        return value
    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value
    return value


def catalog_sources(
    csv_path: Path,
    images_dir: Path,
    *,
    id_column: str = "item_id",
    image_column: str = "image",
) -> list[SourceImage]:
    """One source per catalog row; other columns become payload metadata."""
    images_root = images_dir.resolve()
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {id_column, image_column} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{csv_path}: missing column(s) {sorted(missing)}; columns are "
                f"{reader.fieldnames} (choose with --id-column / --image-column)"
            )
        return [
            _catalog_row(row, line, csv_path, images_root, id_column, image_column)
            for line, row in enumerate(reader, start=2)
        ]


def _catalog_row(
    row: dict[str, str],
    line: int,
    csv_path: Path,
    images_root: Path,
    id_column: str,
    image_column: str,
) -> SourceImage:
    item_id = (row.get(id_column) or "").strip()
    image_name = (row.get(image_column) or "").strip()
    where = f"{csv_path.name}:{line}"
    if not item_id or not image_name:
        missing = id_column if not item_id else image_column
        failure = IngestFailure(
            item_id=item_id or None, source=where, reason=BAD_ROW, message=f"empty {missing!r}"
        )
        return SourceImage(job=None, path=None, failure=failure)
    path = (images_root / image_name).resolve()
    if not path.is_relative_to(images_root):
        failure = IngestFailure(
            item_id=item_id,
            source=where,
            reason=InvalidImageReason.FORBIDDEN_PATH.value,
            message=f"{image_name!r} points outside {images_root}",
        )
        return SourceImage(job=None, path=None, failure=failure)
    metadata = {
        key: parse_cell(value.strip())
        for key, value in row.items()
        if key not in (id_column, image_column) and key and value and value.strip()
    }
    job = ImageJob(item_id=item_id, source_uri=path.as_uri(), metadata=metadata)
    return SourceImage(job=job, path=path)


_Pending = dict[tuple[str, str], tuple[ImageJob, bytes, set[str]]]


@dataclass(frozen=True)
class _LoadedChunk:
    """A chunk ready for inference: what each image still misses, decoded tensors, failures."""

    pending: _Pending
    prepared: dict[Preprocessing, list[PreparedImage]]
    outcome: IngestSummary


@dataclass
class BulkIngestor:
    """Batched, resumable ingestion of many images into every given model's collection.

    With ``thumbnails``, each newly ingested image also gets a thumbnail (made from the same
    decode) whose key lands in its points' payload.
    """

    store: VectorStore
    runtimes: Sequence[ModelRuntime]
    limits: ImageLimits
    batch_size: int = 16
    jpeg_draft: bool = True
    thumbnails: ThumbnailStore | None = None
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE

    def run(
        self, sources: Sequence[SourceImage], *, limit: int | None = None, progress: bool = True
    ) -> IngestSummary:
        """Ingest the sources (the first ``limit`` only, if given) and summarise the run."""
        selected = sources[:limit] if limit is not None else sources
        summary = IngestSummary()
        for runtime in self.runtimes:
            self.store.ensure_collection(runtime.manifest)
        started = time.perf_counter()
        chunks = list(_chunks(selected, self.batch_size))
        # Decoding the next chunk overlaps embedding the current one: Pillow releases the GIL
        # while it decodes and resizes, and ONNX Runtime while it runs.
        with (
            tqdm(total=len(selected), unit="img", disable=not progress, desc="ingest") as bar,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder,
        ):
            upcoming = decoder.submit(self._load, chunks[0]) if chunks else None
            for index, chunk in enumerate(chunks):
                assert upcoming is not None  # noqa: S101 (one future per chunk)
                loaded = upcoming.result()
                if index + 1 < len(chunks):
                    upcoming = decoder.submit(self._load, chunks[index + 1])
                self._embed_and_store(loaded, summary)
                bar.update(len(chunk))
                bar.set_postfix(
                    ingested=summary.ingested, skipped=summary.skipped, failed=summary.failed
                )
        summary.seconds = time.perf_counter() - started
        return summary

    def _load(self, chunk: Sequence[SourceImage]) -> _LoadedChunk:
        """Read, skip what is stored, decode: everything before inference, for one chunk."""
        outcome = IngestSummary()
        pending = self._not_yet_stored(self._read(chunk, outcome), outcome)
        return _LoadedChunk(pending, self._prepare(pending, outcome), outcome)

    def _embed_and_store(self, loaded: _LoadedChunk, summary: IngestSummary) -> None:
        for runtime in self.runtimes:
            model_id = runtime.manifest.spec.id
            images = [
                image
                for image in loaded.prepared[runtime.preprocessing]
                if model_id in loaded.pending[(image.job.item_id, image.image_sha256)][2]
            ]
            embed_and_store(self.store, runtime, images)
        summary.ingested += len(next(iter(loaded.prepared.values()), []))
        summary.skipped += loaded.outcome.skipped
        summary.failures += loaded.outcome.failures

    def _read(
        self, chunk: Sequence[SourceImage], summary: IngestSummary
    ) -> list[tuple[ImageJob, bytes]]:
        """File bytes of each source; unreadable ones (and bad rows) become failures."""
        loaded: list[tuple[ImageJob, bytes]] = []
        for source in chunk:
            if source.failure is not None:
                summary.failures.append(source.failure)
            elif source.job is not None and source.path is not None:
                try:
                    loaded.append((source.job, read_image_file(source.path, self.limits)))
                except InvalidImage as error:
                    summary.failures.append(_failure(source.job, error))
        return loaded

    def _not_yet_stored(
        self, loaded: Sequence[tuple[ImageJob, bytes]], summary: IngestSummary
    ) -> _Pending:
        """Which images still miss from which models (resuming skips the stored ones)."""
        keyed = {(job.item_id, sha256_hex(data)): (job, data) for job, data in loaded}
        ids = {point_id(*key): key for key in keyed}
        missing: dict[tuple[str, str], set[str]] = {key: set() for key in keyed}
        for runtime in self.runtimes:
            model_id = runtime.manifest.spec.id
            stored = {point.id for point in self.store.retrieve(model_id, list(ids))}
            for pid, key in ids.items():
                if pid not in stored:
                    missing[key].add(model_id)
        summary.skipped += sum(1 for models in missing.values() if not models)
        return {key: (*keyed[key], models) for key, models in missing.items() if models}

    def _prepare(
        self,
        pending: _Pending,
        summary: IngestSummary,
    ) -> dict[Preprocessing, list[PreparedImage]]:
        """Decode each image once (and thumbnail it); bad images become failures."""
        recipes = {runtime.preprocessing for runtime in self.runtimes}
        prepared: dict[Preprocessing, list[PreparedImage]] = {recipe: [] for recipe in recipes}
        thumbnail_size = None if self.thumbnails is None else self.thumbnail_size
        for job, data, _models in pending.values():
            try:
                images = prepare_images(
                    job,
                    data,
                    recipes,
                    self.limits,
                    jpeg_draft=self.jpeg_draft,
                    thumbnail_size=thumbnail_size,
                )
            except InvalidImage as error:
                summary.failures.append(_failure(job, error))
                continue
            if self.thumbnails is not None:
                images = store_thumbnail(self.thumbnails, images)
            for recipe, image in images.items():
                prepared[recipe].append(image)
        return prepared


def _failure(job: ImageJob, error: InvalidImage) -> IngestFailure:
    return IngestFailure(
        item_id=job.item_id, source=job.source_uri, reason=error.reason.value, message=error.message
    )


def _chunks(items: Sequence[SourceImage], size: int) -> Iterator[Sequence[SourceImage]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def upload_events(
    sources: Sequence[SourceImage],
    blobs: BlobStore,
    limits: ImageLimits,
    *,
    models: list[str] | None = None,
) -> tuple[list[UploadEvent], list[IngestFailure]]:
    """Queue path: copy each image into the blob store and describe it as an upload event.

    Image bytes never travel through Redis; the event carries the blob's URI, which the
    workers resolve from the same blob directory.
    """
    events: list[UploadEvent] = []
    failures: list[IngestFailure] = []
    for source in sources:
        if source.failure is not None:
            failures.append(source.failure)
        elif source.job is not None and source.path is not None:
            try:
                uri = blobs.put(read_image_file(source.path, limits))
            except InvalidImage as error:
                failures.append(_failure(source.job, error))
                continue
            events.append(
                UploadEvent(
                    item_id=source.job.item_id,
                    image_uri=uri,
                    metadata=source.job.metadata,
                    models=models,
                )
            )
    return events, failures
