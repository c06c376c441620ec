"""Embedding exports as HTTP downloads, for the API and the admin page alike.

JSON lines stream out as the store is scrolled, a page at a time. ``npy`` (two files) and
Parquet (whose footer comes last) are written to a temporary folder first; the file sent is
unlinked as soon as it is open, so nothing is left behind however the download ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from ingest.store.base import VectorStore
from ingest.vector_export.plan import ExportPlan
from ingest.vector_export.run import jsonl_stream, write_export
from schemas.exports import ExportFormat

MEDIA_TYPES: Final = {
    ExportFormat.JSONL: "application/x-ndjson",
    ExportFormat.NPY: "application/zip",
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
}
CHUNK_BYTES = 1 << 20
# The name a download is saved under, after the model's id.
SUFFIXES: Final = {
    ExportFormat.JSONL: ".jsonl",
    ExportFormat.NPY: ".npy.zip",
    ExportFormat.PARQUET: ".parquet",
}


def download_name(plan: ExportPlan, fmt: ExportFormat) -> str:
    """``<model id>.jsonl``, ``<model id>.npy.zip`` or ``<model id>.parquet``."""
    return f"{plan.model_id}{SUFFIXES[fmt]}"


def _zip_of(files: tuple[Path, ...], names: tuple[str, ...], target: Path) -> Path:
    # Stored, not deflated: float32 vectors hardly compress, and a .npz is laid out the same.
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, name in zip(files, names, strict=True):
            archive.write(path, arcname=name)
    return target


def _written_file(store: VectorStore, plan: ExportPlan, fmt: ExportFormat, folder: Path) -> Path:
    out = folder / f"{plan.model_id}.{fmt.value}"
    summary = write_export(store, plan, fmt, out)
    if fmt is not ExportFormat.NPY:
        return out
    names = (f"{plan.model_id}.npy", f"{plan.model_id}.ids.jsonl")
    return _zip_of(summary.files, names, folder / download_name(plan, fmt))


# The body, status and headers of a download. Not a Response: spectree reads a returned
# Response's whole body to validate it, which would buffer the stream (or fail on a file).
Download = tuple[Iterator[bytes], int, dict[str, str]]


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The file's bytes a block at a time; closed at the end or when the client goes away."""
    try:
        while block := handle.read(CHUNK_BYTES):
            yield block
    finally:
        handle.close()


def export_download(store: VectorStore, plan: ExportPlan, fmt: ExportFormat) -> Download:
    """The plan's points as an attachment: jsonl streamed, npy (zipped) and parquet sent from
    a temporary file."""
    headers = {
        "Content-Type": MEDIA_TYPES[fmt],
        "Content-Disposition": f'attachment; filename="{download_name(plan, fmt)}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if fmt is ExportFormat.JSONL:
        return jsonl_stream(store, plan), 200, headers
    folder = Path(tempfile.mkdtemp(prefix="lookalike-export-"))
    try:
        handle = _written_file(store, plan, fmt, folder).open("rb")
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the open handle keeps the data meanwhile
    headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
    return _chunks(handle), 200, headers
