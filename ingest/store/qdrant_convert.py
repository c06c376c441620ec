"""Conversions between Lookalike's point and filter schemas and qdrant-client's models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import models

from ingest.store.base import point_id
from ingest.store.records import stored_payload
from schemas.models import ModelManifest
from schemas.points import (
    AnyOfCondition,
    Condition,
    MatchCondition,
    NewPoint,
    PayloadFilter,
    ScoredPoint,
    StoredPoint,
)


def _condition(condition: Condition) -> models.FieldCondition:
    """One Lookalike condition as a Qdrant field condition."""
    if isinstance(condition, MatchCondition):
        return models.FieldCondition(
            key=condition.key, match=models.MatchValue(value=condition.value)
        )
    if isinstance(condition, AnyOfCondition):
        return models.FieldCondition(key=condition.key, match=models.MatchAny(any=condition.values))
    return models.FieldCondition(
        key=condition.key,
        range=models.Range(gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte),
    )


def to_qdrant_filter(
    payload_filter: PayloadFilter | None, *, exclude_ids: Sequence[str] = ()
) -> models.Filter | None:
    """Translate a ``PayloadFilter`` (plus point ids to leave out) into a Qdrant filter."""
    must: list[models.Condition] = []
    must_not: list[models.Condition] = []
    if payload_filter is not None:
        must.extend(_condition(c) for c in payload_filter.must)
        must_not.extend(_condition(c) for c in payload_filter.must_not)
    if exclude_ids:
        must_not.append(models.HasIdCondition(has_id=list(exclude_ids)))
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def _payload(point: models.ScoredPoint | models.Record) -> dict[str, Any]:
    return dict(point.payload or {})


def _vector(vector: object) -> list[float] | None:
    # Lookalike collections hold one unnamed dense vector, which comes back as a plain list.
    if isinstance(vector, list):
        return [float(x) for x in vector]
    return None


def scored_point(point: models.ScoredPoint) -> ScoredPoint:
    payload = _payload(point)
    return ScoredPoint(
        id=str(point.id),
        item_id=str(payload.get("item_id", "")),
        score=point.score,
        payload=payload,
    )


def stored_point(record: models.Record) -> StoredPoint:
    payload = _payload(record)
    return StoredPoint(
        id=str(record.id),
        item_id=str(payload.get("item_id", "")),
        payload=payload,
        vector=_vector(record.vector),
    )


def point_struct(model: ModelManifest, point: NewPoint, ingested_at: str) -> models.PointStruct:
    """A new point as Qdrant stores it."""
    return models.PointStruct(
        id=point_id(point.item_id, point.image_sha256),
        vector=list(point.vector),
        payload=stored_payload(model, point, ingested_at),
    )
