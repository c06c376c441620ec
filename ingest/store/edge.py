"""The embedded backend of ``VectorStore``: Qdrant's own engine as a library (qdrant-edge).

One EdgeShard per collection in ``<root>/<prefix>__<model>/`` (``edge_shards``), owned by one
process; every call runs under the store's lock (web app and worker threads share it). Answers
are Qdrant's (ids, payloads, scores, filters, recommend, groups, errors), as the congruence
tests check against ``QdrantStore``. Durability and search modes: ``edge_collections``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import qdrant_edge as edge
from pydantic_core import to_jsonable_python

from ingest.errors import CollectionMismatch
from ingest.store.base import SYSTEM_PAYLOAD_KEYS
from ingest.store.edge_collections import (
    DEFAULT_HNSW,
    EXACT_BELOW,
    Collection,
    Collections,
    HnswParams,
)
from ingest.store.edge_convert import (
    as_store_error,
    edge_point,
    is_backend_error,
    item_filter,
    known_ids,
)
from ingest.store.edge_indexer import BackgroundIndexer
from ingest.store.edge_reads import EdgeReads, translate_errors
from ingest.store.records import Recorded, check_vectors
from schemas.models import ModelManifest
from schemas.points import CollectionInfo, NewPoint, StoredPoint
from schemas.settings import DEFAULT_PAYLOAD_INDEXES, Settings


class EdgeStore(EdgeReads):
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
        hnsw: HnswParams = DEFAULT_HNSW,
        background_index: bool = False,
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
                hnsw=hnsw,
            )
        except OSError as exc:  # say, a root that cannot be created
            raise as_store_error(exc, str(self.root)) from exc
        self._indexer: BackgroundIndexer | None = None
        if background_index:
            self._indexer = BackgroundIndexer(self)
            self._indexer.start()

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        """The embedded store in ``store_path`` (default ``<data_dir>/edge``), with the
        configured prefix and payload indexes, building HNSW indexes in the background."""
        return cls(
            settings.resolved_store_path(),
            prefix=settings.collection_prefix,
            payload_indexes=settings.payload_indexes,
            background_index=True,
        )

    # --- collections ------------------------------------------------------------------

    @translate_errors
    def ensure_collection(self, model: ModelManifest) -> CollectionInfo:
        """Create the model's collection if absent; refuse if it was built by another model."""
        return self._info(self._collections.ensure(model))

    def _info(self, collection: Collection) -> CollectionInfo:
        state = self._index_state(collection)
        return CollectionInfo(
            name=collection.name,
            model_id=collection.recorded.model_id,
            dimension=collection.recorded.dimension,
            model_fingerprint=collection.recorded.fingerprint,
            points=collection.shard.count(edge.CountRequest(exact=True)),
            current=self._collections.alias_target() == collection.name,
            index=state.state,
            indexed_vectors=state.indexed_vectors,
        )

    @translate_errors
    def drop_collection(self, model_id: str) -> bool:
        """Delete a model's collection and all its points (reindex); False if there was none."""
        return self._collections.drop(model_id)

    @translate_errors
    def collections(self) -> list[CollectionInfo]:
        """Every Lookalike collection in this store (other folders are left out)."""
        return [self._info(c) for c in self._collections.listing()]

    @translate_errors
    def current_model(self) -> str | None:
        """Model id of the collection the ``<prefix>`` alias points at; None without alias."""
        return self._collections.current_model()

    @translate_errors
    def set_current(self, model_id: str) -> None:
        """Point the ``<prefix>`` alias at the model's (existing) collection, atomically."""
        self._collections.set_current(model_id)

    # --- writes: each one flushed before it returns -----------------------------------

    @translate_errors
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

    @translate_errors
    def import_points(self, recorded: Recorded, points: Sequence[StoredPoint]) -> None:
        """Write points exactly as another store holds them (ids, vectors, payloads: nothing
        re-stamped) into the collection of ``recorded``, created if absent (migration)."""
        collection = self._collections.ensure_recorded(recorded)
        if collection.recorded != recorded:
            raise CollectionMismatch(
                f"collection {collection.name!r} already holds {collection.recorded}, not "
                f"{recorded}: move {self.root} away to import into an empty store"
            )
        converted = [
            edge.Point(id=p.id, vector=list(p.vector or ()), payload=to_jsonable_python(p.payload))
            for p in points
        ]
        if converted:
            collection.write(edge.UpdateOperation.upsert_points(converted))

    @translate_errors
    def delete_item(self, model_id: str, item_id: str) -> int:
        """Delete every point of an item; returns how many were deleted."""
        collection = self._collections.existing(model_id)
        of_item = item_filter(item_id)
        found = collection.shard.count(edge.CountRequest(exact=True, filter=of_item))
        if found:
            collection.write(edge.UpdateOperation.delete_points_by_filter(of_item))
        return found

    @translate_errors
    def delete_points(self, model_id: str, ids: Sequence[str]) -> int:
        """Delete these points (reindex reconciliation); returns how many existed."""
        collection = self._collections.existing(model_id)
        if not ids:
            return 0
        found = [r.id for r in collection.shard.retrieve(known_ids(ids), False, False)]
        if found:
            collection.write(edge.UpdateOperation.delete_points(found))
        return len(found)

    @translate_errors
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

    @translate_errors
    def unindexed_models(self, quiet_for: float) -> list[str]:
        """Models whose collections hold ``exact_below`` or more vectors outside the index and
        have not been written for ``quiet_for`` seconds (the background indexer's work)."""
        now = time.monotonic()
        waiting = []
        for collection in self._collections.listing():
            info = collection.shard.info()
            counts = (info.points_count, info.indexed_vectors_count)
            outside = info.points_count - info.indexed_vectors_count
            if (
                not collection.building
                and outside >= max(self.exact_below, 1)
                and now - collection.written_at >= quiet_for
                and collection.unchanged_at != counts
            ):
                waiting.append(collection.recorded.model_id)
        return waiting

    def close(self) -> None:
        """Release the store: stop index builds, close the shards, give up the root."""
        if self._indexer is not None:
            self._indexer.stop()
        self._collections.close()
        if self._indexer is not None:
            self._indexer.join()
