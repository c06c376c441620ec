"""The Qdrant backend of ``VectorStore``: a Qdrant server, or qdrant-client's local mode."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from qdrant_client import QdrantClient, models

from ingest.errors import ItemNotFound
from ingest.store.base import SYSTEM_PAYLOAD_KEYS
from ingest.store.qdrant_collections import Collections
from ingest.store.qdrant_convert import point_struct, scored_point, stored_point, to_qdrant_filter
from ingest.store.qdrant_errors import BACKEND_ERRORS, as_store_error
from ingest.store.qdrant_local import MEMORY
from ingest.store.records import SCHEMA_VERSION, check_vectors
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
from schemas.settings import DEFAULT_PAYLOAD_INDEXES, Settings

__all__ = ["MEMORY", "SCHEMA_VERSION", "QdrantStore"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translate_errors(
    method: Callable[Concatenate[QdrantStore, _P], _R],
) -> Callable[Concatenate[QdrantStore, _P], _R]:
    """Run a store method under the store's guard, turning backend failures into StoreErrors."""

    @functools.wraps(method)
    def wrapper(self: QdrantStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._guard:
            try:
                return method(self, *args, **kwargs)
            except BACKEND_ERRORS as exc:
                # A collection may have been dropped or rebuilt behind our back (reindex from
                # another process): forget what we verified so the next call looks again.
                self._collections.forget()
                raise as_store_error(exc, self._where) from exc

    return wrapper


class QdrantStore:
    """``VectorStore`` on Qdrant: one cosine collection per model, named ``<prefix>__<model>``."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        prefix: str = "lookalike",
        payload_indexes: Sequence[str] = DEFAULT_PAYLOAD_INDEXES,
        shard_number: int = 1,
        replication_factor: int = 1,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.payload_indexes = tuple(payload_indexes)
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        options = client.init_options
        local = options.get("location") == MEMORY or options.get("path") is not None
        self._where: str = str(
            options.get("path") or options.get("url") or options.get("location") or "localhost"
        )
        # Local mode is plain Python over numpy arrays and sqlite, not safe for concurrent
        # writers and readers (the embedded stack shares one store between API and worker
        # threads); a server handles concurrency itself.
        self._guard: contextlib.AbstractContextManager[object] = (
            threading.RLock() if local else contextlib.nullcontext()
        )
        self._collections = Collections(
            client,
            prefix=prefix,
            payload_indexes=self.payload_indexes,
            shard_number=shard_number,
            replication_factor=replication_factor,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantStore:
        """The Qdrant server of ``qdrant_url``, with the configured prefix, indexes, shards."""
        if not settings.qdrant_url:
            raise ValueError("QdrantStore.from_settings needs qdrant_url (a Qdrant server)")
        return cls(
            QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key),
            prefix=settings.collection_prefix,
            payload_indexes=settings.payload_indexes,
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
        )

    @_translate_errors
    def ensure_collection(self, model: ModelManifest) -> CollectionInfo:
        """Create the model's collection if absent; refuse if it was built by another model."""
        return self._collections.ensure(model)

    @_translate_errors
    def drop_collection(self, model_id: str) -> bool:
        """Delete a model's collection and all its points (reindex); False if there was none."""
        return self._collections.drop(model_id)

    @_translate_errors
    def upsert(self, model: ModelManifest, points: Sequence[NewPoint]) -> list[str]:
        """Store points (overwriting same item+image); returns their point ids."""
        # Checked before touching the store so that a bad batch creates nothing.
        check_vectors(model, points)
        name = self._collections.name(model.spec.id)
        if not self._collections.verified(model):
            self.ensure_collection(model)
        ingested_at = datetime.now(UTC).isoformat()
        structs = [point_struct(model, point, ingested_at) for point in points]
        if structs:
            self.client.upsert(name, points=structs, wait=True)
        return [str(struct.id) for struct in structs]

    def _item_points(self, model_id: str, item_id: str) -> tuple[str, models.Filter, int]:
        """Collection name, the filter selecting an item's points, and how many there are."""
        name, _ = self._collections.existing(model_id)
        item_filter = to_qdrant_filter(PayloadFilter.from_pairs({"item_id": item_id}))
        assert item_filter is not None  # noqa: S101 (a non-empty filter always translates)
        return (
            name,
            item_filter,
            self.client.count(name, count_filter=item_filter, exact=True).count,
        )

    @_translate_errors
    def delete_item(self, model_id: str, item_id: str) -> int:
        """Delete every point of an item; returns how many were deleted."""
        name, item_filter, found = self._item_points(model_id, item_id)
        if found:
            self.client.delete(
                name, points_selector=models.FilterSelector(filter=item_filter), wait=True
            )
        return found

    @_translate_errors
    def delete_points(self, model_id: str, ids: Sequence[str]) -> int:
        """Delete these points (reindex reconciliation); returns how many existed."""
        name, _ = self._collections.existing(model_id)
        if not ids:
            return 0
        found = [r.id for r in self.client.retrieve(name, list(ids), with_payload=False)]
        if found:
            self.client.delete(name, points_selector=models.PointIdsList(points=found), wait=True)
        return len(found)

    @_translate_errors
    def update_item_payload(self, model_id: str, item_id: str, metadata: dict[str, Any]) -> int:
        """Merge metadata into every point of an item (no re-embedding); returns how many."""
        name, item_filter, found = self._item_points(model_id, item_id)
        # System keys describe the stored image itself: metadata never overrides them.
        user_keys = {k: v for k, v in metadata.items() if k not in SYSTEM_PAYLOAD_KEYS}
        if found and user_keys:
            self.client.set_payload(
                name,
                payload=user_keys,
                points=models.FilterSelector(filter=item_filter),
                wait=True,
            )
        return found

    @_translate_errors
    def retrieve(
        self, model_id: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]:
        """Points with these ids that exist (missing ids are left out), in the order asked."""
        name, _ = self._collections.existing(model_id)
        if not ids:
            return []
        records = self.client.retrieve(
            name, list(ids), with_payload=True, with_vectors=with_vectors
        )
        found = {str(record.id): stored_point(record) for record in records}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def _query_input(
        self,
        model_id: str,
        vector: Sequence[float] | None,
        point_id: str | None,
        payload_filter: PayloadFilter | None,
    ) -> tuple[str, list[float] | str, models.Filter | None]:
        """Collection name, Qdrant query and filter for a query by vector or by stored point."""
        if vector is not None and point_id is None:
            name = self._collections.existing_for(model_id, vector)
            return name, list(vector), to_qdrant_filter(payload_filter)
        if point_id is not None and vector is None:
            name, _ = self._collections.existing(model_id)
            if not self.client.retrieve(name, [point_id], with_payload=False):
                raise ItemNotFound(f"no point {point_id!r} in the collection of model {model_id!r}")
            # "More like this" must not answer with the query image itself.
            return name, point_id, to_qdrant_filter(payload_filter, exclude_ids=[point_id])
        raise ValueError("query by exactly one of `vector` or `point_id`")

    @_translate_errors
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
        name, query, query_filter = self._query_input(model_id, vector, point_id, filter)
        response = self.client.query_points(
            name,
            query=query,
            query_filter=query_filter,
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
            with_payload=True,
        )
        return [scored_point(point) for point in response.points]

    @_translate_errors
    def query_batch(
        self,
        model_id: str,
        vectors: Sequence[Sequence[float]],
        *,
        limit: int = 10,
        score_threshold: float | None = None,
    ) -> list[list[ScoredPoint]]:
        """Nearest points to each vector, in one request (duplicate scans)."""
        if not vectors:
            return []
        # Every vector is checked: a batch of the wrong dimension is refused whole.
        names = {self._collections.existing_for(model_id, vector) for vector in vectors}
        [name] = names
        requests = [
            models.QueryRequest(
                query=list(vector), limit=limit, score_threshold=score_threshold, with_payload=True
            )
            for vector in vectors
        ]
        answers = self.client.query_batch_points(name, requests=requests)
        return [[scored_point(point) for point in answer.points] for answer in answers]

    @_translate_errors
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
        name, query, query_filter = self._query_input(model_id, vector, point_id, filter)
        result = self.client.query_points_groups(
            name,
            group_by=group_by,
            query=query,
            query_filter=query_filter,
            limit=limit,
            group_size=group_size,
            score_threshold=score_threshold,
            with_payload=True,
        )
        return [
            PointGroup(key=group.id, hits=[scored_point(hit) for hit in group.hits])
            for group in result.groups
        ]

    @_translate_errors
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
        if not positive:
            raise ValueError("a recommendation needs at least one positive example")
        name, _ = self._collections.existing(model_id)
        examples = list(dict.fromkeys([*positive, *negative]))
        found = {str(r.id) for r in self.client.retrieve(name, examples, with_payload=False)}
        missing = [example for example in examples if example not in found]
        if missing:
            raise ItemNotFound(
                f"no point {missing[0]!r} in the collection of model {model_id!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        recommend = models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=list(positive),
                negative=list(negative) or None,
                strategy=models.RecommendStrategy(strategy),
            )
        )
        response = self.client.query_points(
            name,
            query=recommend,
            # Local mode drops the examples on its own; a server is told explicitly.
            query_filter=to_qdrant_filter(filter, exclude_ids=examples),
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
            with_payload=True,
        )
        return [scored_point(point) for point in response.points]

    @_translate_errors
    def facet(
        self, model_id: str, key: str, *, filter: PayloadFilter | None = None, limit: int = 50
    ) -> list[FacetCount]:
        """Counts per value of a payload field among points matching the filter."""
        name, _ = self._collections.existing(model_id)
        response = self.client.facet(
            name, key, facet_filter=to_qdrant_filter(filter), limit=limit, exact=True
        )
        return [FacetCount(value=hit.value, count=hit.count) for hit in response.hits]

    @_translate_errors
    def count(self, model_id: str, *, filter: PayloadFilter | None = None) -> int:
        """Exact number of points matching the filter."""
        name, _ = self._collections.existing(model_id)
        return self.client.count(name, count_filter=to_qdrant_filter(filter), exact=True).count

    @_translate_errors
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
        name, _ = self._collections.existing(model_id)
        records, next_offset = self.client.scroll(
            name,
            scroll_filter=to_qdrant_filter(filter),
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [stored_point(r) for r in records], None if next_offset is None else str(next_offset)

    @_translate_errors
    def collections(self) -> list[CollectionInfo]:
        """Every Lookalike collection in this store (other collections are left out)."""
        return self._collections.listing()

    @_translate_errors
    def current_model(self) -> str | None:
        """Model id of the collection the ``<prefix>`` alias points at; None without alias."""
        return self._collections.current_model()

    @_translate_errors
    def set_current(self, model_id: str) -> None:
        """Point the ``<prefix>`` alias at the model's (existing) collection, atomically."""
        self._collections.set_current(model_id)

    def close(self) -> None:
        """Release the store (local mode holds a file lock)."""
        with self._guard:
            self._collections.forget()
            self.client.close()
