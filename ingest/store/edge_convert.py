"""Conversions between Lookalike's point and filter schemas and qdrant-edge's objects."""

from __future__ import annotations

import errno
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import qdrant_edge as edge
from pydantic_core import to_jsonable_python

from ingest.errors import StoreError, StoreUnavailable
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
from schemas.queries import RecommendStrategy

# What a failing EdgeShard call raises: the bindings turn every engine error into a plain
# ``Exception`` (exactly that class), while argument mistakes are ``TypeError``s, i.e. bugs.
BACKEND_ERROR = Exception

# Engine messages that mean "not now" rather than "never": worth a retry later.
_TRANSIENT_MARKERS = ("WouldBlock", "No space left", "Too many open files", "Resource busy")
_NO_FACET_INDEX = "No appropriate index for faceting"


# Disk trouble that may pass (full, quota, I/O error, out of file handles).
_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EAGAIN}
)


def is_backend_error(exc: BaseException) -> bool:
    """Whether an exception came from the engine or the disk (not from a bug on our side)."""
    return type(exc) is BACKEND_ERROR or isinstance(exc, OSError)


def as_store_error(exc: Exception, where: str) -> StoreError:
    """The Lookalike exception for a qdrant-edge or file system failure."""
    message = str(exc).strip()
    if isinstance(exc, OSError):
        if exc.errno in _TRANSIENT_ERRNOS:
            return StoreUnavailable(f"the embedded vector store at {where} is unavailable: {exc}")
        return StoreError(f"the embedded vector store at {where} failed: {exc}")
    if any(marker in message for marker in _TRANSIENT_MARKERS):
        return StoreUnavailable(f"the embedded vector store at {where} is unavailable: {message}")
    if _NO_FACET_INDEX in message:
        # The server refuses the same way; local mode counts anyway. Say how to fix it.
        return StoreError(
            f"the embedded vector store at {where} counts values only of indexed fields: add "
            f"the field to LOOKALIKE_PAYLOAD_INDEXES ({message})"
        )
    return StoreError(f"the embedded vector store at {where} failed: {message}")


def known_ids(ids: Sequence[str]) -> list[edge.PointId]:
    """The ids that can name a stored point, once each: Lookalike's ids are UUIDs.

    The engine refuses other strings outright; qdrant-client's local mode just finds no such
    point, which is what callers expect (a missing point), so the others are left out here.
    """
    known: list[edge.PointId] = []
    for text in dict.fromkeys(ids):
        try:
            uuid.UUID(text)
        except ValueError:
            continue
        known.append(text)
    return known


def _condition(condition: Condition) -> edge.FieldCondition:
    """One Lookalike condition as an edge field condition."""
    if isinstance(condition, MatchCondition):
        if isinstance(condition.value, bool):
            # qdrant-edge 0.9.0 reads MatchValue(True) as the integer 1, so it would match
            # `1` and never `true`: refuse rather than answer wrongly.
            raise StoreError(
                f"the embedded vector store cannot filter on the boolean value of "
                f"{condition.key!r} (qdrant-edge 0.9.0 matches it as an integer): store the "
                "flag as a keyword ('true'/'false'), or use a Qdrant server"
            )
        return edge.FieldCondition(key=condition.key, match=edge.MatchValue(condition.value))
    if isinstance(condition, AnyOfCondition):
        return edge.FieldCondition(key=condition.key, match=edge.MatchAny(condition.values))
    return edge.FieldCondition(
        key=condition.key,
        range=edge.RangeFloat(
            gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte
        ),
    )


def to_edge_filter(
    payload_filter: PayloadFilter | None,
    *,
    exclude_ids: Sequence[str] = (),
    extra_must: Sequence[edge.FieldCondition] = (),
    extra_must_not: Sequence[edge.IsEmptyCondition] = (),
) -> edge.Filter | None:
    """Translate a ``PayloadFilter`` (plus point ids to leave out) into an edge filter."""
    must: list[edge.FieldCondition] = list(extra_must)
    must_not: list[edge.FieldCondition | edge.HasIdCondition | edge.IsEmptyCondition] = list(
        extra_must_not
    )
    if payload_filter is not None:
        must.extend(_condition(c) for c in payload_filter.must)
        must_not.extend(_condition(c) for c in payload_filter.must_not)
    if exclude_ids:
        must_not.append(edge.HasIdCondition(set(exclude_ids)))
    if not must and not must_not:
        return None
    # The stub's list type is invariant, so the narrower lists need widening for mypy.
    return edge.Filter(must=list[Any](must) or None, must_not=list[Any](must_not) or None)


def edge_point(model: ModelManifest, point: NewPoint, ingested_at: str) -> edge.Point:
    """A new point as the shard stores it: the same id and payload as the Qdrant backend's."""
    # The bindings take JSON values only; qdrant-client would serialise dates and the like to
    # JSON on the way to a server, so do the same here.
    payload: dict[str, Any] = to_jsonable_python(stored_payload(model, point, ingested_at))
    id_ = point_id(point.item_id, point.image_sha256)
    return edge.Point(id=id_, vector=list(point.vector), payload=payload)


def _vector(vector: object) -> list[float] | None:
    # Lookalike shards hold one unnamed dense vector, which comes back as a plain list.
    if isinstance(vector, list):
        return [float(x) for x in vector]
    return None


def stored_point(record: edge.Record) -> StoredPoint:
    """An edge record as a Lookalike stored point (ids always as strings)."""
    payload = dict(record.payload or {})
    return StoredPoint(
        id=str(record.id),
        item_id=str(payload.get("item_id", "")),
        payload=payload,
        vector=_vector(record.vector),
    )


def scored_point(point: edge.ScoredPoint, payload: dict[str, Any] | None = None) -> ScoredPoint:
    """An edge hit as a Lookalike scored point; ``payload`` replaces the one it carries."""
    payload = dict(point.payload or {}) if payload is None else payload
    return ScoredPoint(
        id=str(point.id),
        item_id=str(payload.get("item_id", "")),
        score=point.score,
        payload=payload,
    )


def recommend_query(
    strategy: RecommendStrategy, positives: list[Any], negatives: list[Any]
) -> edge.Query:
    """The edge query for a recommend strategy, from the examples' stored vectors."""
    if strategy == "best_score":
        return edge.Query.RecommendBestScore(edge.RecommendQuery(positives, negatives))
    if strategy == "sum_scores":
        return edge.Query.RecommendSumScores(edge.RecommendQuery(positives, negatives))
    if strategy != "average_vector":
        raise StoreError(f"unknown recommend strategy {strategy!r}")
    # Qdrant's average_vector: mean(positive) + (mean(positive) - mean(negative)), searched
    # as a plain nearest query (normalised for cosine by the engine, as by the server).
    mean_positive = np.mean(np.asarray(positives, dtype=np.float32), axis=0)
    average = mean_positive
    if negatives:
        average = 2 * mean_positive - np.mean(np.asarray(negatives, dtype=np.float32), axis=0)
    return edge.Query.Nearest([float(x) for x in average])


def search_params(info: edge.ShardInfo, exact_below: int, hnsw_ef: int | None) -> edge.SearchParams:
    """Exact search while the shard is small or has no index yet, HNSW once it has one."""
    if info.indexed_vectors_count == 0 or info.points_count < exact_below:
        return edge.SearchParams(exact=True)
    return edge.SearchParams(hnsw_ef=hnsw_ef)


def item_filter(item_id: str) -> edge.Filter:
    """The filter of every point of one item."""
    found = to_edge_filter(PayloadFilter.from_pairs({"item_id": item_id}))
    assert found is not None  # noqa: S101 (a non-empty filter always translates)
    return found
