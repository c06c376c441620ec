"""Whether a re-index may start, and what to tell the user when it may not or when it ends."""

from __future__ import annotations

from ingest.errors import LookalikeError
from ingest.models.registry import ModelRegistry
from ingest.store.base import VectorStore
from ingest.store.current import current_model_id
from schemas.models import ModelManifest
from schemas.reindex import ReindexJob
from schemas.settings import Settings


class ReindexRefused(LookalikeError):
    """The re-index cannot start as asked (same model as the current one, ...)."""


def same_model_message(model_id: str) -> str:
    """Why re-indexing a model into itself is refused, and what to do instead."""
    return (
        f"{model_id!r} is already the current model: nothing to re-index. To re-index with a "
        "new file of the same model, register it under a new id (`lookalike models register "
        "FILE --id NEW_ID`) and run `lookalike reindex --to NEW_ID`"
    )


def check_reindex(
    settings: Settings, store: VectorStore, registry: ModelRegistry, target: str
) -> tuple[str, ModelManifest]:
    """The source model and the target's manifest, with the target collection ready.

    ``ModelNotFound`` if the target is not installed, ``ReindexRefused`` if it is the current
    model, ``StoreError`` if the current model has no collection, ``CollectionMismatch`` if
    the target's collection was built with another file.
    """
    manifest = registry.manifest(target)
    source = current_model_id(settings, store)
    if source == target:
        raise ReindexRefused(same_model_message(target))
    store.count(source)  # "no collection for model ..." when there is nothing to re-index
    store.ensure_collection(manifest)
    return source, manifest


def _hint(job: ReindexJob) -> str:
    if any(failure.reason == "forbidden_path" for failure in job.failures):
        return (
            " Images ingested from a folder are read again from their file:// URIs: add those "
            "folders to LOOKALIKE_SOURCES__FILE_ROOTS on the workers."
        )
    return ""
