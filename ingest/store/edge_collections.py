"""The embedded store's open collections: create, verify, drop, list, alias, build indexes.

Not thread-safe on its own: ``EdgeStore`` calls it under its lock (``guard``), except
``build_index``, which takes the lock itself around its quick steps and runs the slow one,
the child process that indexes a copy of the shard, without it.

Durability: every write call (upsert, deletes, payload updates) flushes the shard before it
returns. ``update`` alone only writes the WAL through an mmap (no msync, no fsync: strace), so
an acknowledged write would survive SIGKILL through the page cache but not a kernel crash or a
power cut; ``flush`` msyncs the WAL and segments and fsyncs them. Its cost, measured on the
2-core machine: an upsert of 16 x 384-d points into a shard growing to 10k points takes 4 ms
without the flush and 14-16 ms with it (p95 18-22 ms); at 20k points in batches of 64, 1.3 ms
and +20 ms (p95 +80 ms when the disk is busy). Against about a second to embed 16 images,
the flush is noise; a bulk load that cares could batch more points per call.

Search mode: exact search (``SearchParams(exact=True)``) while a collection is small or has
no HNSW index yet; HNSW once the shard reports indexed vectors. Nothing indexes during
upserts (``optimize`` blocks for 18-180 s at 100k points): ``build_index`` builds the index
from a background thread, in a child process on a copy of the shard (``optimize`` holds the
GIL, so in this process it would stall every thread), while queries and writes go on; it then
swaps the indexed copy in and replays the writes made meanwhile.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from ingest.errors import CollectionMismatch, CollectionNotFound, ItemNotFound, StoreError
from ingest.store.base import collection_name
from ingest.store.edge_convert import known_ids
from ingest.store.edge_shards import (
    INDEXING,
    SHARD,
    AliasManifest,
    RootOwner,
    clean_root,
    copy_for_indexing,
    create_folder,
    load_shard,
    read_record,
    recover,
    remove_tree,
    start_optimizer,
    swap_in,
)
from ingest.store.records import Recorded, check_model
from schemas.models import ModelManifest
from schemas.points import IndexMode

# How long closing or dropping waits for a cancelled index build to clean up.
_CANCEL_WAIT_S = 60.0


# Below this many points exact search is cheap (about 11 ms at 100k x 384) and always right.
EXACT_BELOW = 20_000


@dataclass(frozen=True)
class HnswParams:
    """The HNSW graph a new collection is indexed with: Qdrant's defaults, which measured
    recall@10 1.0000 on 100,000 clustered 384-d vectors and 0.9996 on real embeddings of the
    benchmark photos against exact search, at 1.5 and 0.7 ms p50 (`bench.store_bench`;
    m=32 or ef_construct=200 bought nothing measurable)."""

    m: int = 16
    ef_construct: int = 100
    # Qdrant searches a segment exactly below this many KB of vectors (its own default).
    full_scan_threshold_kb: int = 10_000


DEFAULT_HNSW = HnswParams()


@dataclass(frozen=True)
class IndexState:
    """How a collection is searched: ``exact`` (no index yet, or small), ``indexing`` (an
    index is being built; searches stay exact meanwhile), ``indexed`` (HNSW)."""

    state: IndexMode
    points: int
    indexed_vectors: int


@dataclass(eq=False)
class Collection:
    """One open collection: its folder, model record and shard."""

    name: str
    folder: Path
    recorded: Recorded
    shard: edge.EdgeShard
    # While an index is built on a copy, every write is also kept here to replay on the copy.
    journal: list[edge.UpdateOperation] | None = None
    builder: subprocess.Popen[str] | None = None
    cancelled: bool = False
    # When it was last written (monotonic seconds), and the shard's (points, indexed vectors)
    # when a build last found nothing to index, so that it is not tried again until it changes.
    written_at: float = 0.0
    unchanged_at: tuple[int, int] | None = None

    @property
    def building(self) -> bool:
        """Whether an index build is under way."""
        return self.journal is not None

    def vectors(self, ids: Sequence[str]) -> list[Any]:
        """The stored vectors of these points, in order; ``ItemNotFound`` for missing ones."""
        records = self.shard.retrieve(known_ids(ids), False, True)
        vectors = {str(r.id): r.vector for r in records}
        missing = [i for i in dict.fromkeys(ids) if i not in vectors]
        if missing:
            raise ItemNotFound(
                f"no point {missing[0]!r} in the collection of model {self.recorded.model_id!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        return [vectors[i] for i in ids]

    def write(self, operation: edge.UpdateOperation) -> None:
        """Apply a write and make it durable before returning (the acknowledgement)."""
        self.shard.update(operation)
        if self.journal is not None:
            self.journal.append(operation)
        self.shard.flush()
        self.written_at = time.monotonic()


class Collections:
    """The collections under one root, ``<prefix>__<model>``; owns the root while open."""

    def __init__(
        self,
        root: Path,
        *,
        prefix: str,
        payload_indexes: Sequence[str],
        indexing_threshold_kb: int | None,
        guard: threading.RLock,
        hnsw: HnswParams,
    ) -> None:
        self.root = root
        self.prefix = prefix
        self.payload_indexes = tuple(payload_indexes)
        self.indexing_threshold_kb = indexing_threshold_kb
        self.hnsw = hnsw
        self._owner = RootOwner(root)  # refuses, in one line, a root another process owns
        try:
            clean_root(root)
        except BaseException:
            self._owner.release()
            raise
        self._aliases = AliasManifest(root)
        self._open: dict[str, Collection] = {}
        self._guard = guard
        self._idle = threading.Condition(guard)
        self._closed = False

    def name(self, model_id: str) -> str:
        """The model's collection name."""
        return collection_name(self.prefix, model_id)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the embedded vector store at {self.root} is closed")

    def _opened(self, name: str) -> Collection | None:
        """The collection of this name, opened on first use; None if there is none."""
        self._check_open()
        collection = self._open.get(name)
        if collection is not None:
            return collection
        folder = self.root / name
        if not folder.is_dir():
            return None
        recorded = read_record(folder)
        recover(folder)
        collection = Collection(name, folder, recorded, load_shard(folder / SHARD))
        self._open[name] = collection
        # Checked on every open so that fields added to the settings later get indexed.
        existing = set(collection.shard.info().payload_schema)
        for field in self.payload_indexes:
            if field not in existing:
                collection.write(
                    edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword)
                )
        return collection

    def _config(self, dimension: int) -> edge.EdgeConfig:
        optimizers = None
        if self.indexing_threshold_kb is not None:
            optimizers = edge.EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb)
        hnsw = edge.HnswIndexConfig(
            m=self.hnsw.m,
            ef_construct=self.hnsw.ef_construct,
            full_scan_threshold=self.hnsw.full_scan_threshold_kb,
        )
        return edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine),
            hnsw_config=hnsw,
            optimizers=optimizers,
        )

    def ensure(self, model: ModelManifest) -> Collection:
        """Create the model's collection if absent; refuse if it was built by another model."""
        collection = self.ensure_recorded(Recorded.of(model))
        check_model(collection.name, collection.recorded, model)
        return collection

    def ensure_recorded(self, recorded: Recorded) -> Collection:
        """The collection of a model record, created if absent (unchecked: see ``ensure``)."""
        name = self.name(recorded.model_id)
        collection = self._opened(name)
        if collection is None:
            config = self._config(recorded.dimension)
            create_folder(self.root, name, recorded, config, self.payload_indexes)
            collection = self._opened(name)
            assert collection is not None  # noqa: S101 (just created, under the lock)
        return collection

    def verified(self, model: ModelManifest) -> Collection:
        """The model's collection, checked against the model once per opening."""
        collection = self._open.get(self.name(model.spec.id))
        if collection is not None and collection.recorded == Recorded.of(model):
            return collection
        return self.ensure(model)

    def existing(self, model_id: str) -> Collection:
        """The model's collection; ``CollectionNotFound`` if it was never created."""
        collection = self._opened(self.name(model_id))
        if collection is None:
            raise CollectionNotFound(
                model_id, f"no collection for model {model_id!r}; ingest some images first"
            )
        return collection

    def existing_for(self, model_id: str, vector: Sequence[float]) -> Collection:
        """The model's collection, if the query vector has the dimension it holds."""
        collection = self.existing(model_id)
        if len(vector) != collection.recorded.dimension:
            raise CollectionMismatch(
                f"query vector has {len(vector)} dimensions but the collection of model "
                f"{model_id!r} holds {collection.recorded.dimension}-d vectors"
            )
        return collection

    def drop(self, model_id: str) -> bool:
        """Delete a model's collection and all its points; False if there was none."""
        self._check_open()
        name = self.name(model_id)
        collection = self._open.pop(name, None)
        if collection is not None:
            self._stop_build(collection)
            collection.shard.close()
        folder = self.root / name
        if not folder.is_dir():
            return False
        # Qdrant deletes a collection's aliases with it.
        self._aliases.forget_collection(name)
        remove_tree(folder)
        return True

    def listing(self) -> list[Collection]:
        """Every Lookalike collection under the root, by name (foreign folders left out)."""
        self._check_open()
        found = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or not folder.name.startswith(f"{self.prefix}__"):
                continue
            try:
                collection = self._opened(folder.name)
            except CollectionMismatch:
                continue  # our prefix, but not built by Lookalike
            if collection is not None:
                found.append(collection)
        return found

    def alias_target(self) -> str | None:
        """The collection the ``<prefix>`` alias points at, if the alias exists."""
        self._check_open()
        return self._aliases.target(self.prefix)

    def current_model(self) -> str | None:
        """Model id of the collection the ``<prefix>`` alias points at; None without alias."""
        name = self.alias_target()
        if name is None:
            return None
        collection = self._open.get(name)
        if collection is not None:
            return collection.recorded.model_id
        try:
            return read_record(self.root / name).model_id
        except CollectionMismatch:
            return None  # pointed elsewhere by hand: not one of ours, so no current model

    def set_current(self, model_id: str) -> None:
        """Point the ``<prefix>`` alias at the model's (existing) collection, atomically."""
        self._check_open()
        name = self.name(model_id)
        if not (self.root / name).is_dir():
            raise CollectionNotFound(
                model_id, f"no collection for model {model_id!r}; nothing to make current"
            )
        self._aliases.point(self.prefix, name)

    # --- index builds -----------------------------------------------------------------

    def build_index(self, model_id: str) -> bool:
        """Index a copy of the shard in a child process, then swap it in (see ``swap_in``)."""
        with self._guard:
            collection = self.existing(model_id)
            if collection.building:
                return False
            collection.shard.flush()
            copy = copy_for_indexing(collection.folder)
            collection.journal, collection.cancelled = [], False
            builder = collection.builder = start_optimizer(copy)
        # The slow part, without the lock: queries and writes go on against the shard.
        output, errors = builder.communicate()
        with self._guard:
            try:
                if collection.cancelled or self._open.get(collection.name) is not collection:
                    return False
                if builder.returncode != 0:
                    last = (errors.strip().splitlines() or ["no output"])[-1]
                    raise StoreError(f"building the index of {collection.name} failed: {last}")
                if output.strip() != "changed":
                    # Nothing to index (below the indexing threshold): not again until it grows.
                    info = collection.shard.info()
                    collection.unchanged_at = (info.points_count, info.indexed_vectors_count)
                    return False
                self._swap(collection)
                return True
            finally:
                if (collection.folder / INDEXING).exists():
                    remove_tree(collection.folder / INDEXING)
                collection.journal, collection.builder = None, None
                self._idle.notify_all()

    def _swap(self, collection: Collection) -> None:
        """Swap the indexed copy in and replay the writes made during the build on it."""
        assert collection.journal is not None  # noqa: S101 (only during a build)
        collection.shard.close()
        try:
            with swap_in(collection.folder) as path:
                indexed = load_shard(path)
                try:
                    for operation in collection.journal:
                        indexed.update(operation)
                    indexed.flush()
                except BaseException:
                    indexed.close()
                    raise
        except BaseException:
            # The old shard is back in place: forget this handle, the next use reopens it.
            self._open.pop(collection.name, None)
            raise
        collection.shard = indexed

    def _stop_build(self, collection: Collection) -> None:
        """Cancel a collection's index build and wait until it has cleaned up."""
        if not collection.building:
            return
        collection.cancelled = True
        if collection.builder is not None:
            collection.builder.kill()
        self._idle.wait_for(lambda: not collection.building, timeout=_CANCEL_WAIT_S)

    def close(self) -> None:
        """Stop index builds, close every shard and give the root up (idempotent)."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            for collection in self._open.values():
                self._stop_build(collection)
            for collection in self._open.values():
                collection.shard.close()
            self._open.clear()
            self._owner.release()
