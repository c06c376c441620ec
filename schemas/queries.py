"""Similarity queries, shared by the CLI and the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.points import PayloadFilter


class SimilarityQuery(BaseModel):
    """Find stored images like an uploaded image, a stored item, or a raw vector."""

    model_id: str
    item_id: str | None = Field(default=None, description="Query with this stored item's image.")
    vector: list[float] | None = Field(default=None, description="Query with a raw embedding.")
    filter: PayloadFilter | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    group_by: str | None = Field(default=None, description="One result per value of this field.")
    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
