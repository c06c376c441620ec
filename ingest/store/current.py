"""The store from settings, and which model's collection queries and uploads use by default."""

from __future__ import annotations

from qdrant_client import QdrantClient

from ingest.errors import StoreUnavailable
from ingest.store.base import VectorStore
from ingest.store.edge import EdgeStore
from ingest.store.edge_shards import RootOwner
from ingest.store.migration import (
    MigratedCollection,
    MigrationProgress,
    legacy_store,
    migrate_legacy_store,
)
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import MEMORY
from schemas.settings import Settings


def open_store(settings: Settings) -> VectorStore:
    """The vector store: a Qdrant server if configured, else the embedded store on disk.

    The embedded store is owned by one process: a second one gets a ``StoreUnavailable``
    naming the owner's pid (``edge_shards.owner_refusal``).
    """
    if settings.qdrant_url:
        return QdrantStore.from_settings(settings)
    old = legacy_store(settings)
    if old is not None:
        raise StoreUnavailable(
            f"{old} holds a vector store in the format of earlier Lookalike versions: run "
            "`lookalike store migrate` (or `lookalike up`, which migrates it by itself) to "
            "move it into the embedded store, once"
        )
    return EdgeStore.from_settings(settings)


def open_migrated_store(
    settings: Settings, progress: MigrationProgress | None = None
) -> tuple[VectorStore, list[MigratedCollection]]:
    """The store, after moving an old-format embedded store into it (what was moved)."""
    if settings.qdrant_url or legacy_store(settings) is None:
        return open_store(settings), []
    store = EdgeStore.from_settings(settings)
    try:
        return store, migrate_legacy_store(settings, store, progress)
    except BaseException:
        store.close()
        raise


def check_store_free(settings: Settings) -> None:
    """Refuse, in one line naming the owner, to start a process whose embedded store another
    process owns (say `lookalike up`), instead of starting and failing at its first request."""
    if settings.qdrant_url:
        return
    root = settings.resolved_store_path()
    if root.is_dir():
        RootOwner(root).release()


def store_exists(settings: Settings) -> bool:
    """Whether there is a store to read: a server always, the embedded one once created."""
    return bool(settings.qdrant_url) or settings.resolved_store_path().is_dir()


def temporary_store(prefix: str) -> QdrantStore:
    """An empty store in memory, for work that must never touch the user's collections."""
    return QdrantStore(QdrantClient(location=MEMORY), prefix=prefix, payload_indexes=())


def current_model_id(settings: Settings, store: VectorStore) -> str:
    """The model queries and uploads use by default: the alias's collection, else the setting.

    ``lookalike reindex`` points the ``<prefix>`` alias at the new model's collection when it
    is complete; until a first reindex there is no alias and ``default_model`` decides.
    """
    return store.current_model() or settings.default_model


def enabled_model_ids(settings: Settings, store: VectorStore) -> list[str]:
    """The models an upload is embedded with: ``enabled_models``, else the current model."""
    return list(settings.enabled_models) or [current_model_id(settings, store)]
