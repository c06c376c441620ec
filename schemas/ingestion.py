"""Outcome of an ingestion run, as reported by the CLI (and later the API and workers)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class IngestFailure(BaseModel):
    """One image that could not be ingested, and why (machine-readable ``reason``)."""

    item_id: str | None
    source: str
    reason: str
    message: str


class IngestSummary(BaseModel):
    """Counts, failures and throughput of one ingestion run."""

    ingested: int = 0
    skipped: int = Field(default=0, description="Already stored (same item and image sha256).")
    failures: list[IngestFailure] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Number of images that could not be ingested."""
        return len(self.failures)

    @property
    def images_per_second(self) -> float:
        """Throughput over images actually embedded."""
        return self.ingested / self.seconds if self.seconds > 0 else 0.0
