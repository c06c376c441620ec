"""The embedded store's reads: retrieve, queries (one, batched, grouped, recommend), facets,
counts, scrolls and the index state, all under the store's lock (see ``edge``)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import qdrant_edge as edge

from ingest.store.edge_collections import Collection, Collections, IndexState
from ingest.store.edge_convert import (
    as_store_error,
    is_backend_error,
    known_ids,
    recommend_query,
    scored_point,
    search_params,
    stored_point,
    to_edge_filter,
)
from ingest.store.edge_groups import query_groups
from schemas.points import (
    FacetCount,
    IndexMode,
    PayloadFilter,
    PointGroup,
    ScoredPoint,
    StoredPoint,
)
from schemas.queries import RecommendStrategy


class EdgeBase:
    """What the store's reads and writes share: the root, search settings, lock, collections."""

    root: Path
    exact_below: int
    hnsw_ef: int | None
    _guard: threading.RLock
    _collections: Collections


_S = TypeVar("_S", bound=EdgeBase)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def translate_errors(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """Run a store method under the store's lock, turning engine failures into StoreErrors."""

    @functools.wraps(method)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._guard:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if is_backend_error(exc):
                    raise as_store_error(exc, str(self.root)) from exc
                raise

    return wrapper


class EdgeReads(EdgeBase):
    """The read half of ``EdgeStore``."""

    @translate_errors
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

    @translate_errors
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

    @translate_errors
    def query_batch(
        self,
        model_id: str,
        vectors: Sequence[Sequence[float]],
        *,
        limit: int = 10,
        score_threshold: float | None = None,
    ) -> list[list[ScoredPoint]]:
        """Nearest points to each vector, in one planned pass (duplicate scans)."""
        if not vectors:
            return []
        # Every vector is checked: a batch of the wrong dimension is refused whole.
        [collection] = {self._collections.existing_for(model_id, v) for v in vectors}
        params = self._params(collection)
        requests = [
            edge.QueryRequest(
                limit=limit,
                query=edge.Query.Nearest([float(x) for x in vector]),
                score_threshold=score_threshold,
                params=params,
                with_payload=True,
            )
            for vector in vectors
        ]
        answers = collection.shard.query_batch(edge.QueryBatchRequest(requests))
        return [[scored_point(hit) for hit in hits] for hits in answers]

    @translate_errors
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

    @translate_errors
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

    @translate_errors
    def facet(
        self, model_id: str, key: str, *, filter: PayloadFilter | None = None, limit: int = 50
    ) -> list[FacetCount]:
        """Counts per value of a payload field among points matching the filter."""
        collection = self._collections.existing(model_id)
        request = edge.FacetRequest(key=key, limit=limit, exact=True, filter=to_edge_filter(filter))
        response = collection.shard.facet(request)
        return [FacetCount(value=hit.value, count=hit.count) for hit in response.hits]

    @translate_errors
    def count(self, model_id: str, *, filter: PayloadFilter | None = None) -> int:
        """Exact number of points matching the filter."""
        collection = self._collections.existing(model_id)
        return collection.shard.count(edge.CountRequest(exact=True, filter=to_edge_filter(filter)))

    @translate_errors
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

    @translate_errors
    def index_state(self, model_id: str) -> IndexState:
        """Whether the collection is searched exactly, being indexed, or through HNSW."""
        return self._index_state(self._collections.existing(model_id))

    def _index_state(self, collection: Collection) -> IndexState:
        info = collection.shard.info()
        state: IndexMode = "indexed"
        if collection.building:
            state = "indexing"
        elif self._params(collection).exact:
            state = "exact"
        return IndexState(state, info.points_count, info.indexed_vectors_count)
