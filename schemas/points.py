"""Stored points, query filters and query results, independent of the vector store backend."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

PayloadValue = str | int | float | bool


class MatchCondition(BaseModel):
    """``key`` equals ``value``."""

    kind: Literal["match"] = "match"
    key: str
    value: str | int | bool


class AnyOfCondition(BaseModel):
    """``key`` equals one of ``values``."""

    kind: Literal["any"] = "any"
    key: str
    values: list[str] | list[int]


class RangeCondition(BaseModel):
    """Numeric ``key`` within the given bounds (e.g. price)."""

    kind: Literal["range"] = "range"
    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Condition = Annotated[MatchCondition | AnyOfCondition | RangeCondition, Field(discriminator="kind")]


class PayloadFilter(BaseModel):
    """Conditions a point's payload must (and must not) satisfy."""

    must: list[Condition] = Field(default_factory=list)
    must_not: list[Condition] = Field(default_factory=list)

    @classmethod
    def from_pairs(cls, pairs: dict[str, PayloadValue]) -> PayloadFilter:
        """Build an all-must-match filter from ``{key: value}``."""
        conditions: list[Condition] = []
        for key, value in pairs.items():
            if isinstance(value, float):
                conditions.append(RangeCondition(key=key, gte=value, lte=value))
            else:
                conditions.append(MatchCondition(key=key, value=value))
        return cls(must=conditions)


class NewPoint(BaseModel):
    """One image embedding about to be stored."""

    item_id: str
    image_sha256: str
    vector: list[float]
    source_uri: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    thumbnail_key: str | None = None


class StoredPoint(BaseModel):
    """A point as read back from the store."""

    id: str
    item_id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


class ScoredPoint(BaseModel):
    """A query result: a stored point and its cosine similarity to the query."""

    id: str
    item_id: str
    score: float
    payload: dict[str, Any]


class PointGroup(BaseModel):
    """Best matches sharing one value of the group-by payload field."""

    key: str | int
    hits: list[ScoredPoint]


class FacetCount(BaseModel):
    """How many points have ``value`` in the faceted field."""

    value: str | int | bool
    count: int


# How a collection is searched; see CollectionInfo.index.
IndexMode = Literal["exact", "indexing", "indexed"]


class CollectionInfo(BaseModel):
    """A model's collection: name, size and the model it was built with."""

    name: str
    model_id: str
    dimension: int
    model_fingerprint: str
    points: int
    current: bool = Field(
        default=False,
        description="The collection searches use by default (the `<prefix>` alias points here).",
    )
    index: IndexMode = Field(
        default="exact",
        description="How searches run: `exact` (every vector compared: small or not yet "
        "indexed), `indexing` (an HNSW index is being built; searches stay exact meanwhile) or "
        "`indexed` (through the HNSW index).",
    )
    indexed_vectors: int = Field(default=0, description="Vectors the HNSW index holds.")
