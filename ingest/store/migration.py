"""Moving a store written by earlier Lookalike versions (qdrant-client's local mode, in
``<data_dir>/qdrant``) into the embedded store, once.

Every point is copied as it is (id, vector, payload, so ``ingested_at`` and the model
fingerprint stay), collection by collection, with the ``<prefix>`` alias; the counts must
match before the old folder is renamed to ``qdrant.migrated`` (kept, never deleted: the user
removes it once satisfied). An interrupted migration leaves the old folder where it was and is
simply run again: writes are upserts by point id, so nothing is doubled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import StoreError
from ingest.store.base import scroll_pages
from ingest.store.edge import EdgeStore
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import local_client
from ingest.store.records import Recorded
from schemas.points import CollectionInfo
from schemas.settings import Settings

LEGACY_FOLDER = "qdrant"
MIGRATED_FOLDER = "qdrant.migrated"
PAGE = 1_000

# Called with (collection name, points copied so far, points in it).
MigrationProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MigratedCollection:
    """One collection moved: its name and how many points it holds on both sides."""

    name: str
    points: int


def legacy_store(settings: Settings) -> Path | None:
    """The old local-mode store folder, if one awaits migration into the embedded store."""
    if settings.qdrant_url:
        return None  # a server is not migrated: the embedded store is not used at all
    folder = settings.data_dir / LEGACY_FOLDER
    # Local mode keeps its collections in collection/<name>/ beside a meta.json.
    if (folder / "meta.json").is_file() and any((folder / "collection").glob("*")):
        return folder
    return None


def migrate_legacy_store(
    settings: Settings, target: EdgeStore, progress: MigrationProgress | None = None
) -> list[MigratedCollection]:
    """Copy every Lookalike collection of the old store into ``target``, check the counts,
    point the alias as it was, then rename the old folder (so it is migrated once)."""
    folder = legacy_store(settings)
    if folder is None:
        return []
    source = QdrantStore(
        local_client(str(folder)), prefix=settings.collection_prefix, payload_indexes=()
    )
    try:
        migrated = [_copy(source, target, info, progress) for info in source.collections()]
        current = source.current_model()
        if current is not None:
            target.set_current(current)
    finally:
        source.close()
    os.replace(folder, folder.with_name(MIGRATED_FOLDER))
    return migrated


def _copy(
    source: QdrantStore,
    target: EdgeStore,
    info: CollectionInfo,
    progress: MigrationProgress | None,
) -> MigratedCollection:
    model_id = info.model_id
    recorded = Recorded(info.model_id, info.model_fingerprint, info.dimension)
    copied = 0
    # scroll_pages yields at least one (possibly empty) page, and importing even an empty one
    # creates the collection: an empty collection moves over too.
    for page in scroll_pages(source, model_id, page_size=PAGE, with_vectors=True):
        target.import_points(recorded, page)
        copied += len(page)
        if progress is not None:
            progress(info.name, copied, info.points)
    stored = target.count(model_id)
    if stored != info.points:
        raise StoreError(
            f"migrating {info.name}: the old store holds {info.points} points but "
            f"{stored} arrived; the old store at {source.client.init_options['path']} is "
            "left as it was: run the migration again"
        )
    return MigratedCollection(info.name, stored)
