"""Similarity queries: by item, vector or image, grouped, faceted, recommended, clustered."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, Json

from schemas.api.common import (
    EXAMPLE_FILTER,
    FormBody,
    ItemId,
    Limit,
    Offset,
    ScoreThreshold,
    UploadedFile,
    Vector,
)
from schemas.models import ModelId
from schemas.points import PayloadFilter, ScoredPoint
from schemas.queries import (
    MAX_CURSOR_CHARS,
    MAX_GROUP_SIZE,
    MAX_GROUPS_PER_PAGE,
    ClusterQuery,
    FacetQuery,
    GroupQuery,
    RecommendQuery,
)


class _QueryOptions(BaseModel):
    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    filter: PayloadFilter | None = None
    limit: Limit = 10
    offset: Offset = 0
    score_threshold: ScoreThreshold | None = None


class SimilarByItem(_QueryOptions):
    """Images like a stored item's image (no re-embedding); the item itself is left out."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"item_id": "sku-01", "limit": 5}]})

    item_id: ItemId


class SimilarByVector(_QueryOptions):
    """Images like a raw embedding of the model's dimension."""

    vector: Vector


class SimilarByImageForm(FormBody):
    """Images like an uploaded image (multipart/form-data); ``filter`` is a JSON string."""

    image: UploadedFile
    model_id: ModelId | None = None
    filter: Json[PayloadFilter] | None = Field(default=None, examples=[EXAMPLE_FILTER])
    limit: Limit = 10
    offset: Offset = 0
    score_threshold: ScoreThreshold | None = None


class SearchResults(BaseModel):
    """Ranked results, best first."""

    model_id: str
    hits: list[ScoredPoint]


# The query service's own models with an optional model id (default model) for the API.
# (mypy sees a narrower base field; pydantic allows the override and the service gets a copy
# with the id filled in.)


class GroupRequest(GroupQuery):
    """Best matches grouped by a payload field, a page of groups at a time (``next_cursor``)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"item_id": "sku-01", "group_by": "brand", "limit": 2}]}
    )

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]
    vector: Vector | None = None


class GroupByImageForm(FormBody):
    """Grouped query with an uploaded image (multipart/form-data); ``filter`` is a JSON string."""

    image: UploadedFile
    model_id: ModelId | None = None
    group_by: str = Field(min_length=1, description="Indexed payload field, e.g. product_id.")
    group_size: int = Field(default=1, ge=1, le=MAX_GROUP_SIZE)
    limit: int = Field(default=10, ge=1, le=MAX_GROUPS_PER_PAGE)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_CHARS)
    filter: Json[PayloadFilter] | None = Field(default=None, examples=[EXAMPLE_FILTER])
    score_threshold: ScoreThreshold | None = None


class FacetRequest(FacetQuery):
    """Counts per value of a payload field among the points matching a filter."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"key": "brand"}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]


class RecommendRequest(RecommendQuery):
    """Items like the positive example items and unlike the negative ones."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"positive": ["sku-01"], "negative": ["sku-02"]}]}
    )

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]


class ClusterRequest(ClusterQuery):
    """Cluster the vectors of the points matching a filter (k-means or density)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"k": 3}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]
