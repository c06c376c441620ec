"""The store from settings, and which model's collection queries and uploads use by default."""

from __future__ import annotations

from qdrant_client import QdrantClient

from ingest.store.base import VectorStore
from ingest.store.qdrant import MEMORY, QdrantStore
from schemas.settings import Settings


def open_store(settings: Settings) -> QdrantStore:
    """The vector store: a Qdrant server if configured, else local mode on disk."""
    return QdrantStore.from_settings(settings)


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
