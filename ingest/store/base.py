"""The ``VectorStore`` interface every backend implements, plus naming rules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from schemas.models import ModelManifest
from schemas.points import (
    CollectionInfo,
    FacetCount,
    NewPoint,
    PayloadFilter,
    PointGroup,
    ScoredPoint,
    StoredPoint,
)
from schemas.queries import RecommendStrategy

# Fixed namespace so that point ids are stable across processes, machines and versions.
POINT_NAMESPACE = uuid.UUID("6f1c1f8e-5f7a-4c55-9a57-6c6f6f6b616c")

# Payload keys Lookalike writes itself; user metadata cannot override them.
SYSTEM_PAYLOAD_KEYS = (
    "item_id",
    "image_sha256",
    "source_uri",
    "thumbnail_key",
    "ingested_at",
    "model_fingerprint",
)


def point_id(item_id: str, image_sha256: str) -> str:
    """UUIDv5 of (item id, image sha256): a redelivered image overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{item_id}\x00{image_sha256}"))


def collection_name(prefix: str, model_id: str) -> str:
    """One collection per model: ``<prefix>__<model-id>``."""
    return f"{prefix}__{model_id}"


class VectorStore(Protocol):
    """Where embeddings live. Every method takes the model id whose collection it works on."""

    def ensure_collection(self, model: ModelManifest) -> CollectionInfo:
        """Create the model's collection if absent; refuse if it was built by another model."""
        ...

    def drop_collection(self, model_id: str) -> bool:
        """Delete a model's collection and all its points (reindex); False if there was none."""
        ...

    def upsert(self, model: ModelManifest, points: Sequence[NewPoint]) -> list[str]:
        """Store points (overwriting same item+image); returns their point ids."""
        ...

    def delete_item(self, model_id: str, item_id: str) -> int:
        """Delete every point of an item; returns how many were deleted."""
        ...

    def delete_points(self, model_id: str, ids: Sequence[str]) -> int:
        """Delete these points (reindex reconciliation); returns how many existed."""
        ...

    def update_item_payload(self, model_id: str, item_id: str, metadata: dict[str, Any]) -> int:
        """Merge metadata into every point of an item (no re-embedding); returns how many."""
        ...

    def retrieve(
        self, model_id: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]:
        """Points with these ids that exist (missing ids are left out)."""
        ...

    def query(
        self,
        model_id: str,
        *,
        vector: Sequence[float] | None = None,
        point_id: str | None = None,
        filter: PayloadFilter | None = None,
        limit: int = 10,
        offset: int = 0,
        score_threshold: float | None = None,
    ) -> list[ScoredPoint]:
        """Nearest points to a vector or to a stored point (which is itself excluded)."""
        ...

    def query_batch(
        self,
        model_id: str,
        vectors: Sequence[Sequence[float]],
        *,
        limit: int = 10,
        score_threshold: float | None = None,
    ) -> list[list[ScoredPoint]]:
        """Nearest points to each vector, in one request (duplicate scans)."""
        ...

    def query_groups(
        self,
        model_id: str,
        *,
        group_by: str,
        vector: Sequence[float] | None = None,
        point_id: str | None = None,
        filter: PayloadFilter | None = None,
        limit: int = 10,
        group_size: int = 1,
        score_threshold: float | None = None,
    ) -> list[PointGroup]:
        """Best matches grouped by a payload field: at most ``group_size`` hits per group."""
        ...

    def recommend(
        self,
        model_id: str,
        *,
        positive: Sequence[str],
        negative: Sequence[str] = (),
        filter: PayloadFilter | None = None,
        limit: int = 10,
        offset: int = 0,
        score_threshold: float | None = None,
        strategy: RecommendStrategy = "average_vector",
    ) -> list[ScoredPoint]:
        """Points like the positive example points and unlike the negative ones (all excluded)."""
        ...

    def facet(
        self, model_id: str, key: str, *, filter: PayloadFilter | None = None, limit: int = 50
    ) -> list[FacetCount]:
        """Counts per value of a payload field among points matching the filter."""
        ...

    def count(self, model_id: str, *, filter: PayloadFilter | None = None) -> int:
        """Exact number of points matching the filter."""
        ...

    def scroll(
        self,
        model_id: str,
        *,
        filter: PayloadFilter | None = None,
        limit: int = 100,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[StoredPoint], str | None]:
        """One page of points in id order, and the offset of the next page (None at the end)."""
        ...

    def collections(self) -> list[CollectionInfo]:
        """Every Lookalike collection in this store (``current`` marks the alias's one)."""
        ...

    def current_model(self) -> str | None:
        """Model id of the collection the ``<prefix>`` alias points at; None without alias."""
        ...

    def set_current(self, model_id: str) -> None:
        """Point the ``<prefix>`` alias at the model's (existing) collection, atomically."""
        ...

    def close(self) -> None:
        """Release the store (the embedded store gives up its root)."""
        ...


def scroll_pages(
    store: VectorStore,
    model_id: str,
    *,
    page_size: int,
    filter: PayloadFilter | None = None,
    with_vectors: bool = False,
) -> Iterator[list[StoredPoint]]:
    """Every page of a collection's points in id order (the last one may be empty)."""
    offset: str | None = None
    while True:
        page, offset = store.scroll(
            model_id, filter=filter, limit=page_size, offset=offset, with_vectors=with_vectors
        )
        yield page
        if offset is None:
            return
