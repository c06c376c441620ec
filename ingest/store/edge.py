"""The embedded backend of ``VectorStore``: Qdrant's own engine as a library (qdrant-edge).

One EdgeShard per collection in ``<root>/<prefix>__<model>/`` (``edge_shards``), owned by one
process; every call runs under the store's lock (web app and worker threads share it). Answers
are Qdrant's (ids, payloads, scores, filters, recommend, groups, errors), as the congruence
tests check against ``QdrantStore``. Durability and search modes: ``edge_collections``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import qdrant_edge as edge
from pydantic_core import to_jsonable_python

from ingest.store.base import SYSTEM_PAYLOAD_KEYS
from ingest.store.edge_collections import EXACT_BELOW, Collection, Collections, IndexState
from ingest.store.edge_convert import (
    as_store_error,
    edge_point,
    is_backend_error,
    item_filter,
    known_ids,
    recommend_query,
    scored_point,
    search_params,
    stored_point,
    to_edge_filter,
)
from ingest.store.edge_groups import query_groups
from ingest.store.qdrant_collections import check_vectors
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

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translate_errors(
    method: Callable[Concatenate[EdgeStore, _P], _R],
) -> Callable[Concatenate[EdgeStore, _P], _R]:
    """Run a store method under the store's lock, turning engine failures into StoreErrors."""

    @functools.wraps(method)
    def wrapper(self: EdgeStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._guard:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if is_backend_error(exc):
                    raise as_store_error(exc, str(self.root)) from exc
                raise

    return wrapper


class EdgeStore:
    """``VectorStore`` on qdrant-edge: one cosine shard per model, ``<prefix>__<model>``."""

    def __init__(
        self,
        root: Path,
        *,
        prefix: str = "lookalike",
        payload_indexes: Sequence[str] = DEFAULT_PAYLOAD_INDEXES,
        exact_below: int = EXACT_BELOW,
        hnsw_ef: int | None = None,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        # Absolute, so that error messages name the folder wherever the process started.
        self.root = Path(root).absolute()
        self.prefix = prefix
        self.payload_indexes = tuple(payload_indexes)
        self.exact_below = exact_below
        self.hnsw_ef = hnsw_ef
        self._guard = threading.RLock()
        try:
            self._collections = Collections(
                self.root,
                prefix=prefix,
                payload_indexes=self.payload_indexes,
                indexing_threshold_kb=indexing_threshold_kb,
                guard=self._guard,
            )
        except OSError as exc:  # say, a root that cannot be created
            raise as_store_error(exc, str(self.root)) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        """The embedded store in ``<data_dir>/edge``, with the configured prefix and indexes."""
        return cls(
            settings.data_dir / "edge",
            prefix=settings.collection_prefix,
            payload_indexes=settings.payload_indexes,
        )

    # --- collections ------------------------------------------------------------------

    @_translate_errors
    def ensure_collection(self, model: ModelManifest) -> CollectionInfo:
        """Create the model's collection if absent; refuse if it was built by another model."""
        return self._info(self._collections.ensure(model))

    def _info(self, collection: Collection) -> CollectionInfo:
        return CollectionInfo(
            name=collection.name,
            model_id=collection.recorded.model_id,
            dimension=collection.recorded.dimension,
            model_fingerprint=collection.recorded.fingerprint,
            points=collection.shard.count(edge.CountRequest(exact=True)),
            current=self._collections.alias_target() == collection.name,
        )

    @_translate_errors
    def drop_collection(self, model_id: str) -> bool:
        """Delete a model's collection and all its points (reindex); False if there was none."""
        return self._collections.drop(model_id)

    @_translate_errors
    def collections(self) -> list[CollectionInfo]:
        """Every Lookalike collection in this store (other folders are left out)."""
        return [self._info(c) for c in self._collections.listing()]

    @_translate_errors
    def current_model(self) -> str | None:
        """Model id of the collection the ``<prefix>`` alias points at; None without alias."""
        return self._collections.current_model()

    @_translate_errors
    def set_current(self, model_id: str) -> None:
        """Point the ``<prefix>`` alias at the model's (existing) collection, atomically."""
        self._collections.set_current(model_id)

    # --- writes: each one flushed before it returns -----------------------------------

    @_translate_errors
    def upsert(self, model: ModelManifest, points: Sequence[NewPoint]) -> list[str]:
        """Store points (overwriting same item+image); returns their point ids."""
        # Checked before touching the store so that a bad batch creates nothing.
        check_vectors(model, points)
        collection = self._collections.verified(model)
        ingested_at = datetime.now(UTC).isoformat()
        converted = [edge_point(model, point, ingested_at) for point in points]
        if converted:
            collection.write(edge.UpdateOperation.upsert_points(converted))
        return [str(point.id) for point in converted]

    @_translate_errors
    def delete_item(self, model_id: str, item_id: str) -> int:
        """Delete every point of an item; returns how many were deleted."""
        collection = self._collections.existing(model_id)
        of_item = item_filter(item_id)
        found = collection.shard.count(edge.CountRequest(exact=True, filter=of_item))
        if found:
            collection.write(edge.UpdateOperation.delete_points_by_filter(of_item))
        return found

    @_translate_errors
    def delete_points(self, model_id: str, ids: Sequence[str]) -> int:
        """Delete these points (reindex reconciliation); returns how many existed."""
        collection = self._collections.existing(model_id)
        if not ids:
            return 0
        found = [r.id for r in collection.shard.retrieve(known_ids(ids), False, False)]
        if found:
            collection.write(edge.UpdateOperation.delete_points(found))
        return len(found)

    @_translate_errors
    def update_item_payload(self, model_id: str, item_id: str, metadata: dict[str, Any]) -> int:
        """Merge metadata into every point of an item (no re-embedding); returns how many."""
        collection = self._collections.existing(model_id)
        of_item = item_filter(item_id)
        found = collection.shard.count(edge.CountRequest(exact=True, filter=of_item))
        # System keys describe the stored image itself: metadata never overrides them.
        user_keys = {k: v for k, v in metadata.items() if k not in SYSTEM_PAYLOAD_KEYS}
        user_keys = to_jsonable_python(user_keys)  # JSON values, as for upserts
        if found and user_keys:
            collection.write(edge.UpdateOperation.set_payload_by_filter(of_item, user_keys))
        return found

    # --- reads ------------------------------------------------------------------------

    @_translate_errors
    def retrieve(
        self, model_id: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]:
        """Points with these ids that exist (missing ids are left out), in the order asked."""
        collection = self._collections.existing(model_id)
        if not ids:
            return []
        records = collection.shard.retrieve(known_ids(ids), True, with_vectors)
        found = {str(record.id): stored_point(record) for record in records}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def _params(self, collection: Collection) -> edge.SearchParams:
        return search_params(collection.shard.info(), self.exact_below, self.hnsw_ef)

    def _target(
        self, model_id: str, vector: Sequence[float] | None, point_id: str | None
    ) -> tuple[Collection, list[float], list[str]]:
        """Collection, query vector and ids to leave out, for a query by vector or by point."""
        if vector is not None and point_id is None:
            collection = self._collections.existing_for(model_id, vector)
            return collection, [float(x) for x in vector], []
        if point_id is not None and vector is None:
            collection = self._collections.existing(model_id)
            [stored] = collection.vectors([point_id])
            # "More like this" must not answer with the query image itself.
            return collection, list(stored), [point_id]
        raise ValueError("query by exactly one of `vector` or `point_id`")

    def _search(
        self,
        collection: Collection,
        query: edge.Query,
        *,
        payload_filter: PayloadFilter | None,
        exclude_ids: Sequence[str],
        limit: int,
        offset: int,
        score_threshold: float | None,
    ) -> list[ScoredPoint]:
        request = edge.QueryRequest(
            limit=limit,
            offset=offset,
            query=query,
            filter=to_edge_filter(payload_filter, exclude_ids=exclude_ids),
            score_threshold=score_threshold,
            params=self._params(collection),
            with_payload=True,
        )
        return [scored_point(hit) for hit in collection.shard.query(request)]

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
        collection, target, exclude = self._target(model_id, vector, point_id)
        return self._search(
            collection,
            edge.Query.Nearest(target),
            payload_filter=filter,
            exclude_ids=exclude,
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
        )

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
        collection, target, exclude = self._target(model_id, vector, point_id)
        return query_groups(
            collection.shard,
            edge.Query.Nearest(target),
            params=self._params(collection),
            payload_filter=filter,
            exclude_ids=exclude,
            group_by=group_by,
            limit=limit,
            group_size=group_size,
            score_threshold=score_threshold,
        )

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
        collection = self._collections.existing(model_id)
        # The edge API recommends from vectors, not point ids: read the examples' vectors.
        vectors = collection.vectors([*positive, *negative])
        positives, negatives = vectors[: len(positive)], vectors[len(positive) :]
        return self._search(
            collection,
            recommend_query(strategy, positives, negatives),
            payload_filter=filter,
            exclude_ids=list(dict.fromkeys([*positive, *negative])),
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
        )

    @_translate_errors
    def facet(
        self, model_id: str, key: str, *, filter: PayloadFilter | None = None, limit: int = 50
    ) -> list[FacetCount]:
        """Counts per value of a payload field among points matching the filter."""
        collection = self._collections.existing(model_id)
        request = edge.FacetRequest(key=key, limit=limit, exact=True, filter=to_edge_filter(filter))
        response = collection.shard.facet(request)
        return [FacetCount(value=hit.value, count=hit.count) for hit in response.hits]

    @_translate_errors
    def count(self, model_id: str, *, filter: PayloadFilter | None = None) -> int:
        """Exact number of points matching the filter."""
        collection = self._collections.existing(model_id)
        return collection.shard.count(edge.CountRequest(exact=True, filter=to_edge_filter(filter)))

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
        collection = self._collections.existing(model_id)
        if offset is not None and not known_ids([offset]):
            raise ValueError(f"invalid scroll offset {offset!r}: offsets are point ids")
        request = edge.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=to_edge_filter(filter),
            with_payload=True,
            with_vector=with_vectors,
        )
        records, next_offset = collection.shard.scroll(request)
        return [stored_point(r) for r in records], None if next_offset is None else str(next_offset)

    # --- the index --------------------------------------------------------------------

    def build_index(self, model_id: str) -> bool:
        """Build the HNSW index of a model's collection (minutes at 100k; call it from a
        background thread: queries and writes go on meanwhile). False if nothing changed."""
        try:
            return self._collections.build_index(model_id)
        except Exception as exc:
            if is_backend_error(exc):
                raise as_store_error(exc, str(self.root)) from exc
            raise

    @_translate_errors
    def index_state(self, model_id: str) -> IndexState:
        """Whether the collection is searched exactly, being indexed, or through HNSW."""
        collection = self._collections.existing(model_id)
        info = collection.shard.info()
        state: Literal["exact", "indexing", "indexed"]
        if collection.building:
            state = "indexing"
        elif self._params(collection).exact:
            state = "exact"
        else:
            state = "indexed"
        return IndexState(state, info.points_count, info.indexed_vectors_count)

    def close(self) -> None:
        """Release the store: stop index builds, close the shards, give up the root."""
        self._collections.close()
