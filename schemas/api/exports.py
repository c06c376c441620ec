"""Embedding export downloads: which format, which points."""

from __future__ import annotations

from pydantic import Field, Json

from schemas.api.common import EXAMPLE_FILTER, FormBody
from schemas.exports import ExportFormat
from schemas.points import PayloadFilter


# Query parameters behave as form fields do: a blank one counts as absent, none is null.
class ExportQuery(FormBody):
    """An export's format and, optionally, the filter its points must match."""

    format: ExportFormat = Field(
        default=ExportFormat.JSONL,
        description="`jsonl`: one JSON object per point (id, item_id, payload, vector); `npy`: "
        "a zip of `<model>.npy` (float32 matrix, a row per point) and `<model>.ids.jsonl` "
        "(id, item_id, payload of each row, in row order); `parquet`: columns id, item_id, "
        "payload (JSON text), vector (fixed-size list of float32).",
    )
    filter: Json[PayloadFilter] | None = Field(
        default=None,
        description="Only the points matching this PayloadFilter (JSON). Default: every point.",
        examples=[EXAMPLE_FILTER],
    )
