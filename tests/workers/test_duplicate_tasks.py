"""The duplicate-groups task and its enqueuer, against a real Redis (and once a real worker)."""

from __future__ import annotations

import base64
import functools
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from PIL import Image
from qdrant_client import QdrantClient

from ingest.errors import StoreError
from ingest.images.sources import SourceResolver
from ingest.ingestion.handler import EventHandler
from ingest.models.runtime import load_runtime
from ingest.state.duplicate_jobs import DuplicateResults
from ingest.state.events import EventTracker
from ingest.store.qdrant import QdrantStore
from schemas.duplicates import DuplicateJobStatus
from schemas.models import ModelManifest
from schemas.points import NewPoint, StoredPoint
from schemas.queue import FIND_DUPLICATES_TASK, QUEUE
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.producer.jobs import enqueue_find_duplicates
from tests.ingest.catalog_samples import distinct_picture
from tests.support import TEST_MODEL_ID
from tests.workers.conftest import MakeStack
from workers import duplicate_tasks
from workers.app import configure
from workers.context import WorkerContext
from workers.duplicate_tasks import find_duplicates, results_for


class WatchedStore(QdrantStore):
    """The real store, calling ``watch`` whenever a scan reads a page."""

    watch: Callable[[], None] | None = None

    def scroll(self, model_id: str, **kwargs: Any) -> tuple[list[StoredPoint], str | None]:
        if self.watch is not None:
            self.watch()
        return super().scroll(model_id, **kwargs)


@pytest.fixture
def store() -> Iterator[WatchedStore]:
    opened = WatchedStore(QdrantClient(location=":memory:"))
    yield opened
    opened.close()


@pytest.fixture
def context(
    settings: Settings,
    store: WatchedStore,
    redis_server: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> WorkerContext:
    """What ``worker_context()`` builds in a worker, on the test's Redis and store."""
    built = WorkerContext(
        settings=settings,
        store=store,
        handler=EventHandler(
            settings, store, SourceResolver(settings), functools.partial(load_runtime, settings)
        ),
        tracker=EventTracker(
            redis.Redis.from_url(redis_server.url), prefix=settings.collection_prefix
        ),
    )
    monkeypatch.setattr(duplicate_tasks, "worker_context", lambda: built)
    return built


@pytest.fixture
def celery(settings: Settings, redis_server: EmbeddedRedis) -> Celery:
    # An app of our own: the shared one caches its broker connection across tests.
    return configure(Celery("duplicate-tests", set_as_current=False), settings, redis_server.url)


def unit(index: int, dimension: int) -> list[float]:
    vector = [0.0] * dimension
    vector[index] = 1.0
    return vector


def put_pairs(store: QdrantStore, model: ModelManifest) -> None:
    """Two exact duplicate pairs and one lone image."""
    dimension = model.spec.dimension
    vectors = [unit(0, dimension), unit(0, dimension), unit(1, dimension)]
    vectors += [unit(1, dimension), unit(2, dimension)]
    store.upsert(
        model,
        [
            NewPoint(item_id=f"i{n}", image_sha256=f"{n:064x}", vector=v, source_uri=f"f:{n}")
            for n, v in enumerate(vectors)
        ],
    )


def queued_args(client: redis.Redis) -> tuple[str, list[Any]]:
    """Task name and JSON arguments of the one message waiting on the queue."""
    (raw,) = client.lrange(QUEUE, 0, -1)
    message = json.loads(raw)
    assert message["content-type"] == "application/json"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], args


def test_enqueue_records_a_queued_job_and_publishes_json_args(
    context: WorkerContext, celery: Celery
) -> None:
    results = results_for(context)
    job_id = enqueue_find_duplicates(celery, results, TEST_MODEL_ID, threshold=0.97)
    job = results.job(job_id)
    assert job is not None
    assert (job.status, job.threshold, job.transitive) == (DuplicateJobStatus.QUEUED, 0.97, False)
    assert results.latest_job(TEST_MODEL_ID) == job
    assert queued_args(context.tracker.client) == (
        FIND_DUPLICATES_TASK,
        [TEST_MODEL_ID, 0.97, False, job_id],
    )


def test_the_task_takes_a_job_from_queued_through_running_to_done(
    context: WorkerContext, celery: Celery, store: WatchedStore, test_manifest: ModelManifest
) -> None:
    put_pairs(store, test_manifest)
    results = results_for(context)
    job_id = enqueue_find_duplicates(celery, results, TEST_MODEL_ID, threshold=0.9)
    seen: list[DuplicateJobStatus] = []

    def watch() -> None:
        job = results.job(job_id)
        assert job is not None
        seen.append(job.status)

    store.watch = watch
    _name, args = queued_args(context.tracker.client)
    find_duplicates(*args)

    assert seen
    assert set(seen) == {DuplicateJobStatus.RUNNING}
    job = results.job(job_id)
    assert job is not None
    assert (job.status, job.groups, job.points_scanned, job.points_total) == (
        DuplicateJobStatus.DONE,
        2,
        5,
        5,
    )
    assert job.error is None
    assert job.started_at is not None
    assert job.finished_at is not None
    page = results.page(job_id)
    assert [g.size for g in page.groups] == [2, 2]


def test_a_failing_scan_marks_the_job_failed_with_the_error(
    context: WorkerContext, celery: Celery
) -> None:
    results = results_for(context)
    job_id = enqueue_find_duplicates(celery, results, TEST_MODEL_ID, threshold=0.9)
    with pytest.raises(StoreError, match="no collection"):
        find_duplicates(TEST_MODEL_ID, 0.9, False, job_id)
    job = results.job(job_id)
    assert job is not None
    assert job.status is DuplicateJobStatus.FAILED
    assert job.error is not None
    assert job.error.startswith("CollectionNotFound: no collection")
    assert job.finished_at is not None


def test_a_message_without_threshold_or_job_record_uses_the_model_default(
    context: WorkerContext, store: WatchedStore, test_manifest: ModelManifest
) -> None:
    put_pairs(store, test_manifest)
    find_duplicates(TEST_MODEL_ID, None, True, "from-another-producer")
    job = results_for(context).job("from-another-producer")
    assert job is not None
    assert (job.status, job.threshold, job.transitive, job.groups) == (
        DuplicateJobStatus.DONE,
        test_manifest.spec.duplicate_threshold,
        True,
        2,
    )


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_real_worker_finds_the_groups_of_ingested_images(make_stack: MakeStack) -> None:
    stack = make_stack()
    stack.start_worker()
    # Three pictures uploaded twice (PNG and JPEG: other bytes, same picture) and one alone.
    uploads = []
    for index in range(4):
        picture = distinct_picture(index)
        uploads.append(stack.upload(f"png-{index}", _png(picture)))
        if index < 3:
            uploads.append(stack.upload(f"jpeg-{index}", _jpeg(picture)))
    event_ids = stack.publish([upload.event for upload in uploads])
    states = stack.wait_settled(event_ids, timeout=120)
    assert {state.status.value for state in states.values()} == {"done"}

    results = DuplicateResults(stack.client, prefix=stack.settings.collection_prefix)
    # Re-encodings of one picture score ~0.999 with the test model, distinct ones below 0.96.
    job_id = enqueue_find_duplicates(stack.celery, results, TEST_MODEL_ID, threshold=0.99)

    def finished() -> bool:
        job = results.job(job_id)
        return job is not None and job.status in (
            DuplicateJobStatus.DONE,
            DuplicateJobStatus.FAILED,
        )

    stack.wait_until(finished, timeout=120, what="the duplicate job")
    job = results.job(job_id)
    assert job is not None
    assert (job.status, job.error, job.points_scanned) == (DuplicateJobStatus.DONE, None, 7)
    page = results.page(job_id)
    pairs = sorted(sorted([g.seed.item_id, *(m.item_id for m in g.members)]) for g in page.groups)
    assert pairs == [[f"jpeg-{i}", f"png-{i}"] for i in range(3)]
