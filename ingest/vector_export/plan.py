"""What an export reads: the collection (dimension, fingerprint), the filter, the points."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ingest.errors import CollectionNotFound, StoreError
from ingest.store.base import VectorStore, scroll_pages
from schemas.points import PayloadFilter, StoredPoint

# Points read per scroll. Each point comes back as Python floats (32 bytes each), so a page of
# 256 384-d points is about 3 MB: small against any export worth the name, and pages this size
# read as fast as bigger ones (measured on qdrant-edge at 100k points).
DEFAULT_PAGE_SIZE = 256


@dataclass(frozen=True)
class ExportPlan:
    """A model's collection, a filter, and how many points matched it when the export began."""

    model_id: str
    dimension: int
    model_fingerprint: str
    filter: PayloadFilter | None
    points: int


def plan_export(
    store: VectorStore, model_id: str, filter: PayloadFilter | None = None
) -> ExportPlan:
    """Look the collection up and count its matching points (``CollectionNotFound`` if none)."""
    points = store.count(model_id, filter=filter)
    info = next((c for c in store.collections() if c.model_id == model_id), None)
    if info is None:  # dropped between the count and the listing
        raise CollectionNotFound(
            model_id, f"no collection for model {model_id!r}; ingest some images first"
        )
    return ExportPlan(model_id, info.dimension, info.model_fingerprint, filter, points)


def export_pages(
    store: VectorStore, plan: ExportPlan, page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[list[StoredPoint]]:
    """The plan's points with their vectors, a page at a time, in id order (no empty page).

    Points are read until the scroll ends, not until ``plan.points``: a point added or deleted
    meanwhile may or may not be in the export, every other one is in it exactly once.
    """
    for page in scroll_pages(
        store, plan.model_id, page_size=page_size, filter=plan.filter, with_vectors=True
    ):
        if page:
            yield page


def checked_vector(point: StoredPoint, dimension: int) -> list[float]:
    """The point's vector, which must have come back with the collection's dimension."""
    vector = point.vector
    if vector is None or len(vector) != dimension:
        raise StoreError(
            f"point {point.id} came back with {len(vector or [])} dimensions, not {dimension}"
        )
    return vector


def page_matrix(points: list[StoredPoint], dimension: int) -> npt.NDArray[np.float32]:
    """The page's vectors as a little-endian float32 matrix, one row per point."""
    rows = [checked_vector(point, dimension) for point in points]
    return np.asarray(rows, dtype="<f4").reshape(len(points), dimension)
