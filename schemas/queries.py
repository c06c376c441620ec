"""Query requests and responses (similar, groups, facets, recommend, clusters) for CLI and API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.points import FacetCount, PayloadFilter, PointGroup

# Bounds shared by the models and the query service; the HTTP layer gets 422s from the models.
MAX_GROUP_SIZE = 10
MAX_GROUPS_PER_PAGE = 100
# A group cursor carries the keys of every group already returned (Qdrant groups have no
# offset), so it grows page by page: cap its length before it is decoded at all.
MAX_CURSOR_CHARS = 65_536
MAX_RECOMMEND_EXAMPLES = 32
MAX_CLUSTERS = 50
# Clustering loads every matching vector into memory: 10k x 1024-d float64 is ~80 MB.
MAX_CLUSTER_POINTS = 10_000

RecommendStrategy = Literal["average_vector", "best_score", "sum_scores"]
ClusterMethod = Literal["kmeans", "hdbscan"]


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


class GroupQuery(BaseModel):
    """Best matches grouped by a payload field, one page of groups at a time."""

    model_id: str
    item_id: str | None = Field(
        default=None, description="Query with this stored item's image (the item is left out)."
    )
    vector: list[float] | None = Field(
        default=None, min_length=1, description="Query with a raw embedding."
    )
    group_by: str = Field(
        min_length=1, description="Indexed payload field, e.g. item_id, product_id, brand."
    )
    group_size: int = Field(default=1, ge=1, le=MAX_GROUP_SIZE, description="Hits per group.")
    limit: int = Field(default=10, ge=1, le=MAX_GROUPS_PER_PAGE, description="Groups per page.")
    cursor: str | None = Field(
        default=None,
        max_length=MAX_CURSOR_CHARS,
        description="`next_cursor` of the previous page of the same query.",
    )
    filter: PayloadFilter | None = None
    score_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _one_target(self) -> GroupQuery:
        if self.item_id is not None and self.vector is not None:
            raise ValueError("query by an item id or a vector, not both")
        return self


class GroupPage(BaseModel):
    """One page of groups, best group first; ``next_cursor`` is None on the last page."""

    groups: list[PointGroup]
    next_cursor: str | None = None
    cursor_limit_reached: bool = Field(
        default=False,
        description="Paging stopped because the cursor may hold no more groups: narrow the "
        "filter or raise the score threshold to see the rest.",
    )


class FacetQuery(BaseModel):
    """Count points per value of a payload field, under a filter."""

    model_id: str
    key: str = Field(min_length=1, description="Indexed payload field, e.g. brand.")
    filter: PayloadFilter | None = None
    limit: int = Field(default=50, ge=1, le=1000, description="Most frequent values kept.")


class FacetResult(BaseModel):
    """Counts per value of ``key``, most frequent first."""

    key: str
    counts: list[FacetCount]


class RecommendQuery(BaseModel):
    """Items like the positive examples and unlike the negative ones."""

    model_id: str
    positive: list[str] = Field(min_length=1, max_length=MAX_RECOMMEND_EXAMPLES)
    negative: list[str] = Field(default_factory=list, max_length=MAX_RECOMMEND_EXAMPLES)
    filter: PayloadFilter | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    # Not bounded to [-1, 1]: sum_scores adds one cosine per example.
    score_threshold: float | None = None
    strategy: RecommendStrategy = "average_vector"

    @model_validator(mode="after")
    def _disjoint_examples(self) -> RecommendQuery:
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"items cannot be both positive and negative examples: {both}")
        return self


class ClusterQuery(BaseModel):
    """Cluster the vectors of the items matching a filter, and map them to 2-D."""

    model_id: str
    filter: PayloadFilter | None = None
    method: ClusterMethod = "kmeans"
    k: int = Field(default=8, ge=2, le=MAX_CLUSTERS, description="Clusters (kmeans).")
    min_cluster_size: int = Field(
        default=5, ge=2, le=1000, description="Smallest cluster (hdbscan); fewer is noise."
    )
    max_points: int = Field(
        default=2000,
        ge=1,
        le=MAX_CLUSTER_POINTS,
        description="Refuse (instead of loading) when more points match the filter.",
    )
    payload_fields: list[str] = Field(
        default_factory=lambda: ["thumbnail_key"],
        max_length=20,
        description="Payload fields copied into each member (e.g. for thumbnails).",
    )


class ClusterMember(BaseModel):
    """One clustered point and its place on the 2-D map."""

    point_id: str
    item_id: str
    x: float
    y: float
    similarity: float | None = Field(
        default=None, description="Cosine similarity to its cluster's centroid (None for noise)."
    )
    payload: dict[str, Any] = Field(default_factory=dict)


class Cluster(BaseModel):
    """Points grouped together; the representative is the member closest to the centroid."""

    id: int
    size: int
    representative_point_id: str
    representative_item_id: str
    members: list[ClusterMember] = Field(description="Most typical (closest to centroid) first.")


class ClusterResult(BaseModel):
    """Clusters, largest first, plus the points a density method left out as noise."""

    method: ClusterMethod
    points: int = Field(description="Points clustered (members and noise).")
    clusters: list[Cluster]
    noise: list[ClusterMember] = Field(default_factory=list)
    explained_variance: list[float] = Field(
        default_factory=list, description="Share of variance each map axis (PCA) explains."
    )
