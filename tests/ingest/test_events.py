"""Applying upload, delete and update-payload events: outcomes per event, real model and store."""

from __future__ import annotations

import functools
import io
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx
import pytest
from qdrant_client import QdrantClient

from ingest.errors import StoreUnavailable
from ingest.images.blobs import BlobStore
from ingest.images.sources import SourceResolver
from ingest.ingestion.handler import EventHandler, Outcome
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import load_runtime
from ingest.store.qdrant import QdrantStore
from schemas.events import DeleteEvent, UpdatePayloadEvent, UploadEvent
from schemas.models import ModelManifest
from schemas.points import NewPoint
from schemas.settings import Settings, SourceSettings
from tests.ingest.catalog_samples import distinct_picture
from tests.support import TEST_MODEL_ID

SECOND_MODEL = "second-model"


def _jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    distinct_picture(index, (96, 72)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FlakyStore(QdrantStore):
    """Failure injection: the real store, except that writes fail while ``down`` is set."""

    down = False

    def upsert(self, model: ModelManifest, points: Sequence[NewPoint]) -> list[str]:
        if self.down:
            raise StoreUnavailable("qdrant is down (injected)")
        return super().upsert(model, points)

    def delete_item(self, model_id: str, item_id: str) -> int:
        if self.down:
            raise StoreUnavailable("qdrant is down (injected)")
        return super().delete_item(model_id, item_id)


@pytest.fixture
def two_model_settings(settings: Settings, registry: ModelRegistry, tmp_path: Path) -> Settings:
    """Two enabled models (the test model registered twice) and an allowed file root."""
    registry.register(registry.model_path(TEST_MODEL_ID), SECOND_MODEL)
    (tmp_path / "root").mkdir()
    return settings.model_copy(
        update={
            "enabled_models": [TEST_MODEL_ID, SECOND_MODEL],
            "sources": SourceSettings(
                file_roots=[tmp_path / "root"], http_hosts=[f"127.0.0.1:{_free_port()}"]
            ),
        }
    )


@pytest.fixture
def store() -> Iterator[FlakyStore]:
    store = FlakyStore(QdrantClient(location=":memory:"))
    yield store
    store.close()


@pytest.fixture
def handler(two_model_settings: Settings, store: FlakyStore) -> EventHandler:
    return EventHandler(
        two_model_settings,
        store,
        SourceResolver(two_model_settings),
        functools.partial(load_runtime, two_model_settings),
    )


def _upload(blobs: BlobStore, index: int, **fields: Any) -> UploadEvent:
    return UploadEvent(item_id=f"item-{index}", image_uri=blobs.put(_jpeg(index)), **fields)


def test_good_and_bad_uploads_get_one_outcome_each_in_order(
    handler: EventHandler, store: FlakyStore, two_model_settings: Settings, tmp_path: Path
) -> None:
    blobs = handler.resolver.blobs
    port = two_model_settings.sources.http_hosts[0]
    events = [
        _upload(blobs, 0, metadata={"brand": "acme"}),
        UploadEvent(item_id="text", image_uri=blobs.put(b"just some text, not a picture")),
        UploadEvent(item_id="gone", image_uri="blob://" + "0" * 64),
        UploadEvent(item_id="outside", image_uri=f"file://{tmp_path}/elsewhere.jpg"),
        UploadEvent(item_id="host", image_uri="http://example.invalid/x.jpg"),
        UploadEvent(item_id="down", image_uri=f"http://{port}/x.jpg"),
        _upload(blobs, 1, models=["no-such-model"]),
        _upload(blobs, 2, models=[SECOND_MODEL]),
    ]
    results = handler.uploads(events)
    assert [r.event_id for r in results] == [e.event_id for e in events]
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.DONE, None),
        (Outcome.FAILED, "not_an_image"),
        (Outcome.FAILED, "not_found"),
        (Outcome.FAILED, "forbidden_path"),
        (Outcome.FAILED, "forbidden_host"),
        (Outcome.RETRY, "source_unavailable"),
        (Outcome.FAILED, "model_unavailable"),
        (Outcome.DONE, None),
    ]
    # Every enabled model by default; only the named one when the event says so.
    assert store.count(TEST_MODEL_ID) == 1
    assert store.count(SECOND_MODEL) == 2
    (point,), _ = store.scroll(TEST_MODEL_ID)
    assert point.payload["brand"] == "acme"
    assert point.payload["source_uri"] == events[0].image_uri


def test_store_outage_asks_for_a_retry_and_a_retry_stores_once(
    handler: EventHandler, store: FlakyStore
) -> None:
    events = [_upload(handler.resolver.blobs, i) for i in range(3)]
    store.down = True
    assert {r.outcome for r in handler.uploads(events)} == {Outcome.RETRY}
    assert {r.reason for r in handler.uploads(events)} == {"store_unavailable"}
    store.down = False
    assert {r.outcome for r in handler.uploads(events)} == {Outcome.DONE}
    assert {r.outcome for r in handler.uploads(events)} == {Outcome.DONE}  # redelivered
    assert store.count(TEST_MODEL_ID) == 3
    assert store.count(SECOND_MODEL) == 3


def test_update_payload_changes_metadata_in_every_collection_without_reembedding(
    handler: EventHandler, store: FlakyStore
) -> None:
    handler.uploads([_upload(handler.resolver.blobs, 0, metadata={"price": 10})])
    before = {m: store.scroll(m, with_vectors=True)[0][0] for m in (TEST_MODEL_ID, SECOND_MODEL)}
    result = handler.update_payload(
        UpdatePayloadEvent(item_id="item-0", metadata={"price": 12.5, "item_id": "hijack"})
    )
    assert result.outcome is Outcome.DONE
    for model_id, old in before.items():
        (new,), _ = store.scroll(model_id, with_vectors=True)
        assert new.payload["price"] == 12.5
        assert new.payload["item_id"] == "item-0"  # system keys are not metadata
        assert new.vector == old.vector


def test_delete_removes_the_item_from_every_collection_only(
    handler: EventHandler, store: FlakyStore
) -> None:
    handler.uploads([_upload(handler.resolver.blobs, i) for i in range(2)])
    assert handler.delete(DeleteEvent(item_id="item-0")).outcome is Outcome.DONE
    for model_id in (TEST_MODEL_ID, SECOND_MODEL):
        remaining, _ = store.scroll(model_id)
        assert [p.item_id for p in remaining] == ["item-1"]
    store.down = True
    retry = handler.delete(DeleteEvent(item_id="item-1"))
    assert (retry.outcome, retry.reason) == (Outcome.RETRY, "store_unavailable")


def test_delete_of_a_model_without_collection_is_nothing_to_do(handler: EventHandler) -> None:
    assert handler.delete(DeleteEvent(item_id="x", models=["never-used"])).outcome is Outcome.DONE


def test_collection_of_another_model_file_fails_the_event(
    handler: EventHandler, registry: ModelRegistry, tmp_path: Path
) -> None:
    handler.uploads([_upload(handler.resolver.blobs, 0)])
    # The second model's file changes (same id, new sha256): its collection must refuse.
    path = registry.model_path(SECOND_MODEL)
    model = onnx.load(str(path))
    model.doc_string = "fine-tuned"  # same graph, new file: a new fingerprint
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    registry.register(other, SECOND_MODEL)
    result = handler.uploads([_upload(handler.resolver.blobs, 1)])[0]
    assert (result.outcome, result.reason) == (Outcome.FAILED, "collection_mismatch")
    assert "reindex" in (result.message or "")


def test_images_that_decode_badly_fail_with_the_decoders_reason(handler: EventHandler) -> None:
    truncated = _jpeg(3)[:200]
    event = UploadEvent(item_id="cut", image_uri=handler.resolver.blobs.put(truncated))
    (result,) = handler.uploads([event])
    assert (result.outcome, result.reason) == (Outcome.FAILED, "truncated")
