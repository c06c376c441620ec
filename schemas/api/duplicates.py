"""Near-duplicates: of an item or an uploaded image, background jobs, dismissed pairs."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.api.common import FormBody, ItemId, UploadedFile
from schemas.duplicates import DuplicateJob
from schemas.models import ModelId
from schemas.points import ScoredPoint

Threshold = Annotated[
    float,
    Field(ge=-1.0, le=1.0, description="Cosine similarity; default: the model's calibrated one."),
]
DuplicateLimit = Annotated[int, Field(ge=1, le=1000, description="Most duplicates returned.")]


class NearDuplicatesOfItem(BaseModel):
    """Images of other items that near-duplicate any image of this item."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"item_id": "sku-01"}]})

    item_id: ItemId
    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    threshold: Threshold | None = None
    limit: DuplicateLimit = 100


class NearDuplicatesOfImageForm(FormBody):
    """Stored images that near-duplicate an uploaded image (multipart/form-data)."""

    image: UploadedFile
    model_id: ModelId | None = None
    threshold: Threshold | None = None
    limit: DuplicateLimit = 100


class NearDuplicates(BaseModel):
    """Near-duplicates above ``threshold``, best first (dismissed pairs left out)."""

    model_id: str
    threshold: float
    hits: list[ScoredPoint]


class DuplicateJobRequest(BaseModel):
    """Start a background search for every duplicate group of a model's collection."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"transitive": False}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    threshold: Threshold | None = None
    transitive: bool = Field(
        default=False, description="Chains A~B~C make one group (else: every pair duplicates)."
    )


class DuplicateJobsQuery(BaseModel):
    """Which model's jobs to list."""

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")


class DuplicateJobList(BaseModel):
    """A model's duplicate jobs, newest first."""

    jobs: list[DuplicateJob]


class DuplicatePageQuery(BaseModel):
    """A page of a finished job's groups."""

    offset: int = Field(default=0, ge=0, le=10_000_000)
    limit: int = Field(default=50, ge=1, le=500)


class DuplicatePair(BaseModel):
    """Two stored images (point ids) a reviewer says are not duplicates."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"point_a": "a", "point_b": "b"}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    point_a: str = Field(min_length=1, max_length=100)
    point_b: str = Field(min_length=1, max_length=100)


class DismissalResult(BaseModel):
    """Whether the pair's state changed (False: it already was so)."""

    changed: bool
