"""Running an export: pages from the store into a writer, files put in place when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.store.base import VectorStore
from ingest.vector_export.parquet import ParquetWriter, check_parquet_available
from ingest.vector_export.plan import DEFAULT_PAGE_SIZE, ExportPlan, export_pages
from ingest.vector_export.writers import (
    JsonlWriter,
    NpyWriter,
    PointWriter,
    jsonl_chunk,
    sidecar_path,
)
from schemas.exports import ExportFormat

Progress = Callable[[int], object]


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: points, files and their bytes; ``expected`` points were counted
    when it began (the two differ if points were added or deleted meanwhile)."""

    format: ExportFormat
    points: int
    expected: int
    files: tuple[Path, ...]
    bytes: int

    @property
    def changed(self) -> bool:
        """Whether the collection changed during the export (more or fewer points)."""
        return self.points != self.expected


def output_files(fmt: ExportFormat, out: Path) -> tuple[Path, ...]:
    """The files an export to ``out`` writes: ``out``, and for ``npy`` its sidecar too."""
    return (out, sidecar_path(out)) if fmt is ExportFormat.NPY else (out,)


def check_format_available(fmt: ExportFormat) -> None:
    """Refuse a format whose optional extra is not installed (``ExtraNotInstalled``)."""
    if fmt is ExportFormat.PARQUET:
        check_parquet_available()


def _open_writer(fmt: ExportFormat, files: tuple[Path, ...], plan: ExportPlan) -> PointWriter:
    if fmt is ExportFormat.JSONL:
        return JsonlWriter(files[0], plan.dimension)
    if fmt is ExportFormat.NPY:
        return NpyWriter(files[0], files[1], plan)
    return ParquetWriter(files[0], plan)


def write_export(
    store: VectorStore,
    plan: ExportPlan,
    fmt: ExportFormat,
    out: Path,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the plan's points to ``out`` (and its sidecar) in ``fmt``, a page at a time.

    The files are written in a hidden folder beside ``out`` and moved into place only once
    complete, so an interrupted export leaves no file that looks whole. Existing files at
    ``out`` are replaced: refusing them is the caller's choice.
    """
    check_format_available(fmt)
    files = output_files(fmt, out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        staged = tuple(staging / path.name for path in files)
        writer = _open_writer(fmt, staged, plan)
        written = 0
        try:
            for page in export_pages(store, plan, page_size):
                writer.write(page)
                written += len(page)
                if progress is not None:
                    progress(len(page))
        finally:
            writer.close()
        for source, target in zip(staged, files, strict=True):
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(path.stat().st_size for path in files)
    return ExportSummary(fmt, written, plan.points, files, size)


def jsonl_stream(
    store: VectorStore, plan: ExportPlan, page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[bytes]:
    """The plan's points as JSON lines, a page per chunk, for a streamed download."""
    for page in export_pages(store, plan, page_size):
        yield jsonl_chunk(page, plan.dimension)
