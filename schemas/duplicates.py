"""Near-duplicates: matches for one image, collection-wide groups, the jobs that find them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, NonNegativeInt


class DuplicatePoint(BaseModel):
    """A stored image taking part in a duplicate group."""

    point_id: str
    item_id: str
    payload: dict[str, Any] = Field(default_factory=dict)


class DuplicateMatch(DuplicatePoint):
    """A near-duplicate and its cosine similarity to the image it duplicates."""

    score: float


class DuplicateLink(BaseModel):
    """One pair found above the threshold, kept to explain transitive groups."""

    a: str
    b: str
    score: float


class DuplicateGroup(BaseModel):
    """A seed image and its near-duplicates, each scored against the seed."""

    group_id: str
    seed: DuplicatePoint
    members: list[DuplicateMatch] = Field(
        description="Best first. Without `transitive`, every pair in the group is a duplicate."
    )
    links: list[DuplicateLink] = Field(
        default_factory=list,
        description="Transitive groups only: the pairs that connect the group.",
    )

    @property
    def size(self) -> int:
        """Images in the group, seed included."""
        return 1 + len(self.members)


class DuplicateJobStatus(StrEnum):
    """Where a collection-wide duplicate job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class DuplicateJob(BaseModel):
    """A background search for duplicate groups in one model's collection."""

    job_id: str
    model_id: str
    threshold: float = Field(ge=-1.0, le=1.0)
    transitive: bool = False
    status: DuplicateJobStatus = DuplicateJobStatus.QUEUED
    points_scanned: NonNegativeInt = 0
    points_total: NonNegativeInt | None = None
    groups: NonNegativeInt = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


class DuplicatePage(BaseModel):
    """One page of a finished job's groups, biggest first, dismissed pairs left out."""

    job: DuplicateJob
    groups: list[DuplicateGroup]
    offset: NonNegativeInt = Field(description="Position in the job's stored groups.")
    next_offset: NonNegativeInt | None = Field(
        description="Where the next page starts; None after the last group."
    )
    total: NonNegativeInt = Field(
        description="Groups the job found; groups emptied by later dismissals are skipped."
    )
