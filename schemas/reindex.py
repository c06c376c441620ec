"""Re-indexing every stored image into another model's collection: the job and its requests."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from schemas.models import ModelId

# Failures kept with their reason in the job; the count is exact beyond that.
MAX_LISTED_FAILURES = 100


class ReindexState(StrEnum):
    """Where a re-index job is."""

    QUEUED = "queued"
    RUNNING = "running"
    SWITCHING = "switching"  # every page done: reconciling, then moving the alias
    DONE = "done"
    FAILED = "failed"


TERMINAL_STATES = frozenset({ReindexState.DONE, ReindexState.FAILED})


class ReindexFailure(BaseModel):
    """A stored image that could not be re-embedded, and why."""

    point_id: str
    item_id: str
    source_uri: str
    reason: str = Field(description="Machine-readable: not_found, decode_error, source_changed...")
    message: str


class ReindexJob(BaseModel):
    """Re-embedding every image of the current model's collection with another model."""

    job_id: str
    source: str | None = Field(
        default=None,
        description="Model whose collection is read (the current one); set when a worker starts.",
    )
    target: str = Field(description="Model the images are re-embedded with.")
    state: ReindexState = ReindexState.QUEUED
    drop_old: bool = False
    allow_failures: bool = False
    page_size: PositiveInt = Field(default=64, le=1000, description="Points per worker task.")
    total: NonNegativeInt = Field(default=0, description="Points in the source collection.")
    done: NonNegativeInt = Field(default=0, description="Points re-embedded into the target.")
    skipped: NonNegativeInt = Field(
        default=0, description="Points already in the target (a resumed or repeated re-index)."
    )
    failed: NonNegativeInt = Field(default=0, description="Points whose image could not be used.")
    removed: NonNegativeInt = Field(
        default=0, description="Points deleted from the target: deleted from the source meanwhile."
    )
    failures: list[ReindexFailure] = Field(
        default_factory=list, description=f"The first {MAX_LISTED_FAILURES} failures."
    )
    switched: bool = Field(default=False, description="Whether the alias now names the target.")
    dropped_old: bool = False
    message: str | None = None
    pages_done: NonNegativeInt = Field(default=0, description="Source pages re-embedded.")
    pages_queued: NonNegativeInt = Field(default=0, description="Pages handed to the queue.")
    next_offset: str | None = Field(
        default=None, description="Where the next source page starts (a point id)."
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def handled(self) -> int:
        """Points dealt with so far, whatever the outcome."""
        return self.done + self.skipped + self.failed

    @property
    def finished(self) -> bool:
        """Whether the job reached done or failed."""
        return self.state in TERMINAL_STATES


class ReindexRequest(BaseModel):
    """Start re-embedding every stored image with another (installed) model."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"to": "dinov2-vitb14", "drop_old": False}]}
    )

    to: ModelId = Field(description="Installed model to re-index into.")
    drop_old: bool = Field(
        default=False, description="Delete the old collection after the switch (no rollback)."
    )
    allow_failures: bool = Field(
        default=False, description="Switch even if some images could not be re-embedded."
    )
