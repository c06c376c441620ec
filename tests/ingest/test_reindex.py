"""Re-indexing into another model, in-process: real local store, real ONNX model, real Redis."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from ingest.errors import ModelNotFound, StoreError
from ingest.images.sources import SourceResolver
from ingest.ingestion.handler import EventHandler, Outcome
from ingest.ingestion.pipeline import ImageJob, embed_prepared, prepare_image
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import load_runtime
from ingest.reindex.checks import ReindexRefused, check_reindex
from ingest.reindex.reindexer import Reindexer, Step
from ingest.state.reindex_jobs import ReindexJobs
from ingest.store.base import SYSTEM_PAYLOAD_KEYS, VectorStore, point_id
from ingest.store.current import current_model_id, open_store
from schemas.events import DeleteEvent, UpdatePayloadEvent, UploadEvent
from schemas.models import Preprocessing
from schemas.points import StoredPoint
from schemas.reindex import ReindexState
from schemas.settings import Settings, SourceSettings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from tests.ingest.catalog_samples import distinct_picture
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID

# The test ONNX file again, with other normalisation: same dimension, different vectors.
OTHER_MODEL_ID = "tiny-random-other"
OTHER_PREPROCESSING = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
IMAGES = 10
PAGE = 4


def jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    distinct_picture(index, (96, 72)).save(buffer, format="JPEG")
    return buffer.getvalue()


def register_other_model(registry: ModelRegistry) -> None:
    """A second installed model whose vectors differ from the test model's."""
    registry.register(
        TEST_MODEL_DIR / "model.onnx",
        OTHER_MODEL_ID,
        preprocessing=OTHER_PREPROCESSING,
        random_weights=True,
    )


@pytest.fixture
def reindex_settings(settings: Settings, registry: ModelRegistry, tmp_path: Path) -> Settings:
    register_other_model(registry)
    (tmp_path / "files").mkdir()
    return settings.model_copy(update={"sources": SourceSettings(file_roots=[tmp_path / "files"])})


@pytest.fixture
def store(reindex_settings: Settings) -> Iterator[VectorStore]:
    store = open_store(reindex_settings)
    yield store
    store.close()


@pytest.fixture
def handler(reindex_settings: Settings, store: VectorStore) -> EventHandler:
    return EventHandler(
        reindex_settings,
        store,
        SourceResolver(reindex_settings),
        functools.partial(load_runtime, reindex_settings),
    )


@pytest.fixture
def jobs(redis_server: EmbeddedRedis) -> Iterator[ReindexJobs]:
    client = redis.Redis.from_url(redis_server.url)
    yield ReindexJobs(client)
    client.close()


@pytest.fixture
def reindexer(
    reindex_settings: Settings, store: VectorStore, jobs: ReindexJobs, handler: EventHandler
) -> Reindexer:
    return Reindexer(
        settings=reindex_settings,
        store=store,
        jobs=jobs,
        resolver=handler.resolver,
        load_runtime=handler.load_runtime,
    )


def upload(handler: EventHandler, index: int, **metadata: object) -> UploadEvent:
    """Ingest image ``index`` as item ``item-<index>`` through the real event handler."""
    uri = handler.resolver.blobs.put(jpeg(index))
    event = UploadEvent(
        item_id=f"item-{index:02d}",
        image_uri=uri,
        metadata={"brand": f"brand-{index % 3}", "price": float(index), **metadata},
    )
    [result] = handler.uploads([event])
    assert result.outcome is Outcome.DONE, result
    return event


@pytest.fixture
def catalog(handler: EventHandler) -> list[UploadEvent]:
    """IMAGES items in the test model's collection (no alias yet: the default model)."""
    return [upload(handler, index) for index in range(IMAGES)]


def all_points(store: VectorStore, model_id: str) -> dict[str, StoredPoint]:
    points, offset = store.scroll(model_id, limit=1000, with_vectors=True)
    assert offset is None
    return {point.id: point for point in points}


def user_metadata(point: StoredPoint) -> dict[str, object]:
    return {k: v for k, v in point.payload.items() if k not in SYSTEM_PAYLOAD_KEYS}


# -- the alias ---------------------------------------------------------------------------------


def test_alias_is_absent_then_set_then_switched_and_survives_a_reopen(
    reindex_settings: Settings, store: VectorStore, registry: ModelRegistry
) -> None:
    for model_id in (TEST_MODEL_ID, OTHER_MODEL_ID):
        store.ensure_collection(registry.manifest(model_id))
    assert store.current_model() is None
    assert current_model_id(reindex_settings, store) == TEST_MODEL_ID  # the setting decides
    assert not any(info.current for info in store.collections())

    store.set_current(TEST_MODEL_ID)
    assert store.current_model() == TEST_MODEL_ID
    store.set_current(OTHER_MODEL_ID)

    assert store.current_model() == OTHER_MODEL_ID
    assert current_model_id(reindex_settings, store) == OTHER_MODEL_ID
    # Only the real collections are listed, the alias's one marked.
    listed = {info.model_id: info.current for info in store.collections()}
    assert listed == {TEST_MODEL_ID: False, OTHER_MODEL_ID: True}
    store.close()
    reopened = open_store(reindex_settings)
    try:
        assert reopened.current_model() == OTHER_MODEL_ID
        with pytest.raises(StoreError, match="no collection for model 'nope'"):
            reopened.set_current("nope")
        assert reopened.current_model() == OTHER_MODEL_ID
        # Dropping the current collection drops its alias: back to the setting.
        reopened.drop_collection(OTHER_MODEL_ID)
        assert reopened.current_model() is None
    finally:
        reopened.close()


def test_delete_points_deletes_only_those_that_exist(
    store: VectorStore, catalog: list[UploadEvent]
) -> None:
    ids = list(all_points(store, TEST_MODEL_ID))

    assert store.delete_points(TEST_MODEL_ID, [ids[0], ids[1], point_id("x", "y")]) == 2
    assert store.count(TEST_MODEL_ID) == IMAGES - 2


# -- the job -----------------------------------------------------------------------------------


def test_reindex_reembeds_every_point_with_the_target_model_and_switches(
    reindex_settings: Settings,
    store: VectorStore,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    job = jobs.create(OTHER_MODEL_ID, page_size=PAGE)

    finished = reindexer.run(job.job_id)

    assert finished.state is ReindexState.DONE, finished
    assert (finished.source, finished.target) == (TEST_MODEL_ID, OTHER_MODEL_ID)
    assert (finished.total, finished.done, finished.skipped, finished.failed) == (
        IMAGES,
        IMAGES,
        0,
        0,
    )
    assert finished.switched
    assert not finished.dropped_old
    assert finished.pages_done == -(-IMAGES // PAGE)
    assert store.current_model() == OTHER_MODEL_ID
    assert current_model_id(reindex_settings, store) == OTHER_MODEL_ID
    old, new = all_points(store, TEST_MODEL_ID), all_points(store, OTHER_MODEL_ID)
    assert set(new) == set(old)  # same point ids: same (item id, image sha256)
    other = load_runtime(reindex_settings, OTHER_MODEL_ID)
    for event, index in zip(catalog, range(IMAGES), strict=True):
        pid = next(p for p in old.values() if p.item_id == event.item_id).id
        before, after = old[pid], new[pid]
        for key in ("item_id", "image_sha256", "source_uri", "thumbnail_key"):
            assert after.payload[key] == before.payload[key], key
        assert after.payload["thumbnail_key"]
        assert user_metadata(after) == user_metadata(before) == dict(event.metadata)
        assert after.payload["model_fingerprint"] == other.manifest.fingerprint
        # The target's vector is what the target model makes of the image, not a copy.
        direct = prepare_image(
            ImageJob(event.item_id, event.image_uri),
            jpeg(index),
            OTHER_PREPROCESSING,
            reindex_settings.images,
        )
        expected = embed_prepared(other, [direct])[0]
        assert after.vector is not None
        assert before.vector is not None
        np.testing.assert_allclose(after.vector, expected, atol=1e-5)
        assert float(np.dot(after.vector, before.vector)) < 0.999
    # The old collection is kept: rollback is a re-index back to it.
    assert store.count(TEST_MODEL_ID) == IMAGES


def test_searches_use_the_old_collection_until_the_switch(
    reindex_settings: Settings,
    store: VectorStore,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    job = jobs.create(OTHER_MODEL_ID, page_size=PAGE)
    step = Step("page", 0, None)
    pages = 0
    while step.kind == "page":
        step = reindexer.run_page(job.job_id, step.page, step.offset)
        pages += 1
        # Between pages: the default query model is still the old one, and it answers.
        model_id = current_model_id(reindex_settings, store)
        assert model_id == TEST_MODEL_ID
        anchor = next(iter(all_points(store, TEST_MODEL_ID)))
        hits = store.query(model_id, point_id=anchor, limit=3)
        assert len(hits) == 3
        running = jobs.require(job.job_id)
        assert running.state is ReindexState.RUNNING
        assert not running.switched
        assert running.done == min(IMAGES, pages * PAGE)
        assert store.count(OTHER_MODEL_ID) == running.done
    assert step.kind == "finish"

    finished = reindexer.finish(job.job_id)

    assert finished.state is ReindexState.DONE
    assert finished.switched
    assert current_model_id(reindex_settings, store) == OTHER_MODEL_ID


def test_a_redelivered_page_is_counted_once_and_queues_nothing_twice(
    reindexer: Reindexer, jobs: ReindexJobs, catalog: list[UploadEvent]
) -> None:
    job = jobs.create(OTHER_MODEL_ID, page_size=PAGE)
    first = reindexer.run_page(job.job_id, 0, None)
    assert first.kind == "page"
    assert first.page == 1
    counted = jobs.require(job.job_id)

    # Redelivered before the next page was queued (its worker died in between): hand on.
    assert reindexer.run_page(job.job_id, 0, None) == first
    jobs.update(job.job_id, pages_queued=2)
    # Redelivered after the next page was queued: nothing to do.
    assert reindexer.run_page(job.job_id, 0, None).kind == "stop"
    # A stray copy of a later page: not its turn.
    assert reindexer.run_page(job.job_id, 2, first.offset).kind == "stop"

    again = jobs.require(job.job_id)
    assert (again.done, again.skipped, again.pages_done) == (counted.done, 0, 1) == (PAGE, 0, 1)


def test_a_restarted_reindex_skips_what_the_target_already_holds(
    store: VectorStore, reindexer: Reindexer, jobs: ReindexJobs, catalog: list[UploadEvent]
) -> None:
    abandoned = jobs.create(OTHER_MODEL_ID, page_size=PAGE)
    reindexer.run_page(abandoned.job_id, 0, None)  # then the job is given up
    assert store.count(OTHER_MODEL_ID) == PAGE

    finished = reindexer.run(jobs.create(OTHER_MODEL_ID, page_size=PAGE).job_id)

    assert finished.state is ReindexState.DONE, finished
    assert (finished.done, finished.skipped) == (IMAGES - PAGE, PAGE)
    assert store.count(OTHER_MODEL_ID) == IMAGES
    # The abandoned job itself resumes where it stopped, too.
    resumed = reindexer.run(abandoned.job_id)
    assert resumed.state is ReindexState.DONE
    assert (resumed.done, resumed.skipped) == (PAGE, IMAGES - PAGE)


def test_unreadable_images_fail_with_their_reason_and_block_the_switch(
    reindex_settings: Settings,
    tmp_path: Path,
    store: VectorStore,
    handler: EventHandler,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    handler.resolver.blobs.delete(catalog[3].image_uri)
    changed = tmp_path / "files" / "changed.jpg"
    changed.write_bytes(jpeg(50))
    file_event = UploadEvent(item_id="on-disk", image_uri=changed.as_uri())
    assert handler.uploads([file_event])[0].outcome is Outcome.DONE
    changed.write_bytes(jpeg(51))  # the file now holds another picture

    refused = reindexer.run(jobs.create(OTHER_MODEL_ID, page_size=PAGE).job_id)

    assert refused.state is ReindexState.FAILED
    assert not refused.switched
    assert (refused.done, refused.failed) == (IMAGES - 1, 2)
    reasons = {failure.item_id: failure.reason for failure in refused.failures}
    assert reasons == {catalog[3].item_id: "not_found", "on-disk": "source_changed"}
    assert refused.message is not None
    assert "not switched" in refused.message
    assert store.current_model() is None
    assert current_model_id(reindex_settings, store) == TEST_MODEL_ID

    allowed = reindexer.run(jobs.create(OTHER_MODEL_ID, allow_failures=True, page_size=PAGE).job_id)

    assert allowed.state is ReindexState.DONE
    assert allowed.switched
    assert (allowed.done, allowed.skipped, allowed.failed) == (0, IMAGES - 1, 2)
    assert allowed.message is not None
    assert "2 image(s) failed" in allowed.message
    assert store.current_model() == OTHER_MODEL_ID
    assert store.count(OTHER_MODEL_ID) == IMAGES - 1


def test_changes_during_the_reindex_are_reconciled_before_and_after_the_switch(
    reindex_settings: Settings,
    store: VectorStore,
    handler: EventHandler,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    job = jobs.create(OTHER_MODEL_ID, page_size=PAGE)
    step = reindexer.run_page(job.job_id, 0, None)
    copied = [p for p in all_points(store, OTHER_MODEL_ID).values()]
    assert len(copied) == PAGE
    # Races the events cannot cover: a copied point deleted from the source only (the
    # delete reached the target before the page wrote it), a payload update the page
    # overwrote, and an upload whose point id sorts before the scroll's position.
    gone, renamed = copied[0], copied[1]
    store.delete_item(TEST_MODEL_ID, gone.item_id)
    store.update_item_payload(TEST_MODEL_ID, renamed.item_id, {"brand": "renamed"})
    behind = None
    for index in range(100, 200):
        event = upload(handler, index)
        sha = handler.resolver.blobs.path_for(event.image_uri).name
        if point_id(event.item_id, sha) < (step.offset or ""):
            behind = point_id(event.item_id, sha)
            break
        handler.delete(DeleteEvent(item_id=event.item_id, models=[TEST_MODEL_ID]))
    assert behind is not None
    # An ordinary delete event during the re-index reaches every collection.
    handler.delete(DeleteEvent(item_id=copied[2].item_id))
    handler.update_payload(UpdatePayloadEvent(item_id=copied[3].item_id, metadata={"price": 1.5}))

    while step.kind == "page":
        step = reindexer.run_page(job.job_id, step.page, step.offset)
    assert step.kind == "finish"
    assert not store.retrieve(OTHER_MODEL_ID, [behind])  # the scroll had passed it

    finished = reindexer.finish(job.job_id)

    assert finished.state is ReindexState.DONE, finished
    assert finished.removed == 1
    old, new = all_points(store, TEST_MODEL_ID), all_points(store, OTHER_MODEL_ID)
    assert set(new) == set(old)
    assert gone.id not in new
    assert behind in new
    assert new[renamed.id].payload["brand"] == "renamed"
    assert new[copied[3].id].payload["price"] == 1.5
    assert store.current_model() == OTHER_MODEL_ID


def test_uploads_without_models_go_to_the_current_model_after_the_switch(
    store: VectorStore,
    handler: EventHandler,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    assert reindexer.run(jobs.create(OTHER_MODEL_ID, page_size=PAGE).job_id).switched

    event = upload(handler, 77)

    sha = handler.resolver.blobs.path_for(event.image_uri).name
    assert store.retrieve(OTHER_MODEL_ID, [point_id(event.item_id, sha)])
    assert not store.retrieve(TEST_MODEL_ID, [point_id(event.item_id, sha)])


def test_reindex_to_the_current_model_is_refused_with_advice(
    reindex_settings: Settings,
    store: VectorStore,
    registry: ModelRegistry,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    with pytest.raises(ReindexRefused, match="models register FILE --id NEW_ID"):
        check_reindex(reindex_settings, store, registry, TEST_MODEL_ID)
    with pytest.raises(ModelNotFound):
        check_reindex(reindex_settings, store, registry, "not-installed")

    refused = reindexer.run(jobs.create(TEST_MODEL_ID, page_size=PAGE).job_id)

    assert refused.state is ReindexState.FAILED
    assert refused.message is not None
    assert "already the current model" in refused.message
    assert store.current_model() is None


def test_drop_old_deletes_the_old_collection_after_the_switch(
    store: VectorStore, reindexer: Reindexer, jobs: ReindexJobs, catalog: list[UploadEvent]
) -> None:
    finished = reindexer.run(jobs.create(OTHER_MODEL_ID, drop_old=True, page_size=PAGE).job_id)

    assert finished.state is ReindexState.DONE
    assert finished.dropped_old
    assert [info.model_id for info in store.collections()] == [OTHER_MODEL_ID]
    assert store.current_model() == OTHER_MODEL_ID


def test_rollback_is_a_reindex_back_that_only_embeds_what_changed(
    store: VectorStore,
    handler: EventHandler,
    reindexer: Reindexer,
    jobs: ReindexJobs,
    catalog: list[UploadEvent],
) -> None:
    assert reindexer.run(jobs.create(OTHER_MODEL_ID, page_size=PAGE).job_id).switched
    upload(handler, 60)  # lands in the new current collection only

    back = reindexer.run(jobs.create(TEST_MODEL_ID, page_size=PAGE).job_id)

    assert back.state is ReindexState.DONE
    assert back.switched
    assert (back.source, back.done, back.skipped) == (OTHER_MODEL_ID, 1, IMAGES)
    assert store.current_model() == TEST_MODEL_ID
    assert store.count(TEST_MODEL_ID) == IMAGES + 1
