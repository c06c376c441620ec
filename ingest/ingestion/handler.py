"""Applying queue events to the store, as plain functions the Celery tasks call.

Each event ends in one of three outcomes: done, failed (bad input: never retried, becomes a
dead letter with its reason) or retry (a transient failure such as the store or an image
host being unreachable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from ingest.errors import (
    CollectionMismatch,
    InvalidImage,
    ModelError,
    SourceUnavailable,
    StoreError,
    StoreUnavailable,
)
from ingest.images.sources import SourceResolver
from ingest.images.thumbnails import ThumbnailStore
from ingest.ingestion.pipeline import (
    ImageJob,
    PreparedImage,
    embed_and_store,
    prepare_images,
    store_thumbnail,
)
from ingest.models.runtime import ModelRuntime
from ingest.store.base import VectorStore
from ingest.store.current import enabled_model_ids
from schemas.events import DeleteEvent, UpdatePayloadEvent, UploadEvent
from schemas.models import Preprocessing
from schemas.settings import Settings


class Outcome(StrEnum):
    """What the worker should do with an event after handling it."""

    DONE = "done"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True)
class EventResult:
    """The outcome of one event, with a machine-readable reason when it did not succeed."""

    event_id: str
    item_id: str
    outcome: Outcome
    reason: str | None = None
    message: str | None = None


RuntimeLoader = Callable[[str], ModelRuntime]


# An upload in play: the event, its image bytes, the models it goes to.
_Live = tuple[UploadEvent, bytes, list[str]]
# Decoded images per event id, one per preprocessing recipe.
_Prepared = dict[str, dict[Preprocessing, PreparedImage]]


@dataclass
class _Batch:
    """Upload events still in play, with their image bytes and target models."""

    results: dict[str, EventResult] = field(default_factory=dict)
    live: list[_Live] = field(default_factory=list)

    def settle(self, event: UploadEvent, outcome: Outcome, reason: str, message: str) -> None:
        self.results[event.event_id] = EventResult(
            event.event_id, event.item_id, outcome, reason, message
        )


class EventHandler:
    """Applies upload, delete and update-payload events to every targeted model collection."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        resolver: SourceResolver,
        load_runtime: RuntimeLoader,
        *,
        thumbnails: ThumbnailStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.resolver = resolver
        self.load_runtime = load_runtime
        self.thumbnails = thumbnails or ThumbnailStore(settings.resolved_thumbnail_dir())

    def uploads(self, events: Sequence[UploadEvent]) -> list[EventResult]:
        """Fetch, decode, embed (one batch per model) and store; one result per event."""
        batch = _Batch()
        try:
            # Asked once per batch, so that uploads after a reindex's alias switch land in the
            # new model's collection. (Deletes and payload updates go to every collection.)
            defaults = (
                enabled_model_ids(self.settings, self.store)
                if any(not event.models for event in events)
                else []
            )
        except StoreError as error:
            outcome, reason = (
                (Outcome.RETRY, "store_unavailable")
                if isinstance(error, StoreUnavailable)
                else (Outcome.FAILED, "store_error")
            )
            return [
                EventResult(event.event_id, event.item_id, outcome, reason, str(error))
                for event in events
            ]
        for event in events:
            self._fetch(event, batch, event.models or defaults)
        runtimes = self._runtimes(batch)
        self._prepare_and_store(batch, runtimes)
        for event, _, _ in batch.live:
            batch.results.setdefault(
                event.event_id, EventResult(event.event_id, event.item_id, Outcome.DONE)
            )
        return [batch.results[event.event_id] for event in events]

    def _fetch(self, event: UploadEvent, batch: _Batch, models: list[str]) -> None:
        try:
            data = self.resolver.fetch(event.image_uri)
        except InvalidImage as error:
            batch.settle(event, Outcome.FAILED, error.reason.value, error.message)
        except SourceUnavailable as error:
            batch.settle(event, Outcome.RETRY, "source_unavailable", str(error))
        else:
            batch.live.append((event, data, models))

    def _runtimes(self, batch: _Batch) -> dict[str, ModelRuntime]:
        """Load each needed model once; events needing a model that will not load fail."""
        runtimes: dict[str, ModelRuntime] = {}
        broken: dict[str, str] = {}
        for model_id in {m for _, _, models in batch.live for m in models}:
            try:
                runtimes[model_id] = self.load_runtime(model_id)
            except ModelError as error:
                broken[model_id] = str(error)
        still_live = []
        for event, data, models in batch.live:
            missing = [m for m in models if m in broken]
            if missing:
                batch.settle(event, Outcome.FAILED, "model_unavailable", broken[missing[0]])
            else:
                still_live.append((event, data, models))
        batch.live = still_live
        return runtimes

    def _prepare_and_store(self, batch: _Batch, runtimes: dict[str, ModelRuntime]) -> None:
        """Decode the next slice of images while the current one is embedded and stored.

        Pillow releases the GIL while it decodes and ONNX Runtime while it runs, so on a
        small machine the overlap hides most of the decoding (as in bulk ingestion). Slices
        are one inference batch: the embedder runs that many images at a time anyway.
        """
        recipes = {runtime.preprocessing for runtime in runtimes.values()}
        size = self.settings.inference_batch
        slices = [batch.live[i : i + size] for i in range(0, len(batch.live), size)]
        if not slices:
            return
        kept: list[_Live] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
            upcoming = decoder.submit(self._prepare, slices[0], recipes)
            for index, live in enumerate(slices):
                prepared, failures = upcoming.result()
                if index + 1 < len(slices):
                    upcoming = decoder.submit(self._prepare, slices[index + 1], recipes)
                for event, error in failures:
                    batch.settle(event, Outcome.FAILED, error.reason.value, error.message)
                decoded = [entry for entry in live if entry[0].event_id in prepared]
                self._store(batch, runtimes, decoded, prepared)
                kept += decoded
        batch.live = kept

    def _prepare(
        self, live: Sequence[_Live], recipes: set[Preprocessing]
    ) -> tuple[_Prepared, list[tuple[UploadEvent, InvalidImage]]]:
        """Decode each image once (and thumbnail it); bad images are returned with the error.

        A thumbnail that cannot be written does not fail the event: its points are stored
        without a ``thumbnail_key`` (logged), since the embedding is what the event is for.
        Runs in the decoding thread: it only reads the batch, the caller settles it.
        """
        prepared: _Prepared = {}
        failures: list[tuple[UploadEvent, InvalidImage]] = []
        for event, data, _models in live:
            job = ImageJob(event.item_id, event.image_uri, dict(event.metadata))
            try:
                images = prepare_images(
                    job,
                    data,
                    recipes,
                    self.settings.images,
                    thumbnail_size=self.settings.thumbnail_size,
                )
            except InvalidImage as error:
                failures.append((event, error))
            else:
                prepared[event.event_id] = store_thumbnail(self.thumbnails, images)
        return prepared, failures

    def _store(
        self,
        batch: _Batch,
        runtimes: dict[str, ModelRuntime],
        live: Sequence[_Live],
        prepared: _Prepared,
    ) -> None:
        for model_id, runtime in sorted(runtimes.items()):
            events = [
                event
                for event, _, models in live
                if model_id in models and event.event_id not in batch.results
            ]
            images = [prepared[event.event_id][runtime.preprocessing] for event in events]
            try:
                embed_and_store(self.store, runtime, images)
            except StoreUnavailable as error:
                # Upserts are idempotent, so the whole event is retried, models already
                # stored included.
                for event in events:
                    batch.settle(event, Outcome.RETRY, "store_unavailable", str(error))
            except CollectionMismatch as error:
                for event in events:
                    batch.settle(event, Outcome.FAILED, "collection_mismatch", str(error))
            except StoreError as error:  # refused by the store: the same request fails again
                for event in events:
                    batch.settle(event, Outcome.FAILED, "store_error", str(error))

    def delete(self, event: DeleteEvent) -> EventResult:
        """Remove the item's points from every targeted collection."""
        return self._per_collection(
            event, event.models, lambda model_id: self.store.delete_item(model_id, event.item_id)
        )

    def update_payload(self, event: UpdatePayloadEvent) -> EventResult:
        """Merge new metadata into the item's points in every targeted collection."""
        return self._per_collection(
            event,
            event.models,
            lambda model_id: self.store.update_item_payload(
                model_id, event.item_id, event.metadata
            ),
        )

    def _per_collection(
        self,
        event: DeleteEvent | UpdatePayloadEvent,
        requested: list[str] | None,
        apply: Callable[[str], int],
    ) -> EventResult:
        try:
            # Without an explicit list, every collection that exists: an item may have been
            # ingested with a model that is no longer enabled. A model without a collection
            # holds nothing of the item, so there is nothing to do there.
            existing = [info.model_id for info in self.store.collections()]
            for model_id in requested or existing:
                if model_id in existing:
                    apply(model_id)
        except StoreUnavailable as error:
            return EventResult(
                event.event_id, event.item_id, Outcome.RETRY, "store_unavailable", str(error)
            )
        except StoreError as error:
            return EventResult(
                event.event_id, event.item_id, Outcome.FAILED, "store_error", str(error)
            )
        return EventResult(event.event_id, event.item_id, Outcome.DONE)
