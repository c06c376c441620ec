"""A model's evaluation as it is kept, served by the API and shown on the admin page."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.ingestion import IngestFailure


class RetrievalNumbers(BaseModel):
    """Retrieval quality: mAP@k, precision@k and top-k accuracy, per cut-off k."""

    queries: int = Field(description="Queries scored.")
    skipped_queries: int = Field(description="Queries whose label has no other image.")
    map_at: dict[str, float]
    precision_at: dict[str, float]
    top_k_accuracy: dict[str, float]


class DuplicateNumbers(BaseModel):
    """Near-duplicate detection at the model's threshold, and the threshold the data suggests."""

    threshold: float
    precision: float
    recall: float
    f1: float
    duplicate_pairs: int
    distinct_pairs: int
    calibrated_threshold: float
    margin: float = Field(description="Lowest duplicate minus highest distinct score.")
    recall_at_precision_99: float
    curve: list[tuple[float, float, float]] = Field(
        description="(threshold, precision, recall), thresholds ascending."
    )


class EvaluationRecord(BaseModel):
    """One model's evaluation on one labelled image set."""

    model_id: str
    fingerprint: str
    tta: bool
    source: str = Field(description="The folder or catalog evaluated on.")
    evaluated_at: datetime
    images: int
    failed_images: list[IngestFailure] = Field(default_factory=list)
    retrieval: RetrievalNumbers
    duplicates: DuplicateNumbers
