"""Embedding exports: the file formats a collection (or a filtered part of it) is written in."""

from __future__ import annotations

from enum import StrEnum


class ExportFormat(StrEnum):
    """How exported points are laid out (see ``ingest.vector_export``)."""

    # One JSON object per line and point: id, item_id, payload, vector.
    JSONL = "jsonl"
    # A float32 matrix (one row per point) plus a JSON-lines sidecar of id, item_id, payload.
    NPY = "npy"
    # One row per point: id, item_id, payload (JSON text), vector (fixed-size list of float32).
    PARQUET = "parquet"
