"""Re-indexing end to end: real Redis, real `lookalike worker` processes, the real CLI.

The local store can be held by one process at a time and the worker holds it, so while a job
runs the test watches it through its record in Redis (the alias has not moved: searches still
go to the old collection) and reads the store once the workers are stopped.

A page of the tiny test model takes a few milliseconds, so a whole job can end before a test
looks. Where a test must act in the middle of a job, the catalog lives on an image host of the
test's own (a real HTTP server on loopback, as a catalog's CDN would be): re-indexing reads
every image again from there, and the host can answer slowly or hold a request, which puts the
worker in the middle of a page for as long as the test needs.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.images.decode import sha256_hex
from ingest.models.registry import ModelRegistry
from ingest.state.reindex_jobs import ReindexJobs
from ingest.store.current import current_model_id
from schemas.events import DeleteEvent, EventStatus, UploadEvent
from schemas.reindex import ReindexJob, ReindexState
from search_api.cli.reindex import NO_WORKER_HINT_SECONDS
from tests.http_support import QuietHandler, ServerState, clear_proxies, serving
from tests.ingest.test_reindex import OTHER_MODEL_ID, register_other_model
from tests.support import TEST_MODEL_ID
from tests.workers.conftest import MakeStack
from tests.workers.queue_support import REPO, QueueStack, Upload, distinct_png

IMAGES = 40
PAGE = 1  # tiny pages: forty tasks, with uploads and deletes handled in between
SLOW_HOST_SECONDS = 0.1  # per image the slow host answers
# Long enough that a held request is still open when the test kills its worker.
FETCH_TIMEOUT_SECONDS = 120


class ImageHost:
    """The catalog's image server: serves what it was given, slowly or held when asked to."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.images: dict[str, bytes] = {}
        self.delay = 0.0  # seconds before each answer
        self.held = 0  # requests waiting for `release`
        self._allowance: int | None = None  # answers left before requests are held
        self._lock = threading.Lock()

    @property
    def host_rule(self) -> str:
        """The ``LOOKALIKE_SOURCES__HTTP_HOSTS`` entry that lets workers fetch from here."""
        return f"127.0.0.1:{self.state.port}"

    def add(self, item_id: str, data: bytes) -> str:
        """Serve ``data`` and return its URL."""
        path = f"/images/{item_id}.png"
        self.images[path] = data
        return self.state.url(path)

    def hold_after(self, answers: int) -> None:
        """Answer ``answers`` more requests, then hold every later one until `release`."""
        with self._lock:
            self._allowance = answers
            self.state.release.clear()

    def release(self) -> None:
        """Answer the held requests and every later one."""
        with self._lock:
            self._allowance = None
        self.state.release.set()

    def must_hold(self) -> bool:
        """Count one request against the allowance; whether it has to wait."""
        with self._lock:
            if self._allowance is None:
                return False
            if self._allowance > 0:
                self._allowance -= 1
                return False
            self.held += 1
            return True


def image_host_handler(host: ImageHost) -> type[QuietHandler]:
    """A handler serving ``host.images``, with its delay and holds."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            """The image at the path, or 404."""
            if host.must_hold():
                host.state.release.wait()
            time.sleep(host.delay)
            data = host.images.get(self.path)
            # The client of a held request may be a worker the test has killed since.
            with contextlib.suppress(ConnectionError):
                if data is None:
                    self.send_error(404)
                else:
                    self.send_body(data, content_type="image/png")

    return Handler


@pytest.fixture
def image_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageHost]:
    """A running image host; workers reach it directly (proxies cleared from their env)."""
    clear_proxies(monkeypatch)
    state = ServerState()
    host = ImageHost(state)
    with serving(image_host_handler(host), state):
        yield host


def image_host_settings(host: ImageHost) -> dict[str, str]:
    """Stack settings under which workers may fetch from ``host``."""
    return {
        "LOOKALIKE_SOURCES__HTTP_HOSTS": json.dumps([host.host_rule]),
        "LOOKALIKE_SOURCES__FETCH_TIMEOUT": str(FETCH_TIMEOUT_SECONDS),
    }


def jobs_of(stack: QueueStack) -> ReindexJobs:
    return ReindexJobs(stack.client, prefix=stack.settings.collection_prefix)


def hosted_upload(host: ImageHost, item_id: str, data: bytes, metadata: dict[str, Any]) -> Upload:
    """An upload event whose image is on ``host`` instead of the blob store."""
    event = UploadEvent(item_id=item_id, image_uri=host.add(item_id, data), metadata=metadata)
    return Upload(event, sha256_hex(data))


def ingest_catalog(
    stack: QueueStack, count: int = IMAGES, first: int = 0, host: ImageHost | None = None
) -> list[Upload]:
    """Upload ``count`` items (blob store, or ``host``) and wait until every one is done."""
    uploads = []
    for i in range(first, first + count):
        item_id, data = f"item-{i:03d}", distinct_png(i)
        metadata: dict[str, Any] = {"brand": f"brand-{i % 4}", "price": i}
        if host is None:
            uploads.append(stack.upload(item_id, data, metadata))
        else:
            uploads.append(hosted_upload(host, item_id, data, metadata))
    ids = stack.publish([u.event for u in uploads])
    states = stack.wait_settled(ids, timeout=180)
    assert {s.status for s in states.values()} == {EventStatus.DONE}, stack.report(ids)
    return uploads


def _interruptible() -> None:
    # As in a terminal: a shell starts background jobs (a CI runner's, say) with SIGINT
    # ignored, and children inherit that; Ctrl-C must reach this CLI as it would a user's.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(stack: QueueStack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "search_api.cli", "reindex", *args],
        cwd=REPO,
        env=stack.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )


def wait_job(stack: QueueStack, predicate: str, *, timeout: float) -> ReindexJob:
    """Wait for the newest job to satisfy ``predicate`` (an attribute test, see below)."""
    found: list[ReindexJob] = []

    def check() -> bool:
        job = jobs_of(stack).latest()
        if job is None:
            return False
        found[:] = [job]
        return {
            "running": job.state is ReindexState.RUNNING and job.pages_done >= 1,
            "finished": job.finished,
        }[predicate]

    stack.wait_until(check, timeout=timeout, what=f"re-index job {predicate}")
    return found[0]


def test_reindex_through_the_cli_while_uploads_and_deletes_go_on(
    make_stack: MakeStack, models_dir: Path, image_host: ImageHost
) -> None:
    register_other_model(ModelRegistry(models_dir))
    # Upload batches flush within 0.1 s, well inside the job's forty one-image pages.
    stack = make_stack(
        overrides={"LOOKALIKE_QUEUE__FLUSH_INTERVAL": "0.1", **image_host_settings(image_host)}
    )
    stack.start_worker()
    catalog = ingest_catalog(stack, host=image_host)
    # A slow image host: forty pages take at least four seconds, while the uploads and the
    # delete below (from the blob store) take well under one.
    image_host.delay = SLOW_HOST_SECONDS

    cli = start_cli(stack, "--to", OTHER_MODEL_ID, "--no-progress", "--page-size", str(PAGE))
    running = wait_job(stack, "running", timeout=120)
    # Mid-way: the alias has not moved, so every search still answers from the old model.
    assert not running.switched
    assert (running.source, running.target) == (TEST_MODEL_ID, OTHER_MODEL_ID)
    assert running.total == IMAGES
    # Uploads (no model given) and deletes keep flowing between the pages.
    late = ingest_catalog(stack, count=3, first=100)
    deleted = catalog[5].event.item_id
    [delete_id] = stack.publish([DeleteEvent(item_id=deleted)])
    stack.wait_settled([delete_id], timeout=60)
    meanwhile = jobs_of(stack).latest()
    assert meanwhile is not None
    assert not meanwhile.switched, "the job ended before the uploads: make its pages smaller"
    out, err = cli.communicate(timeout=240)

    assert cli.returncode == 0, f"{out}\n{err}\n{stack.report()}"
    assert f"alias switched: searches now use {OTHER_MODEL_ID}" in out, out
    done = jobs_of(stack).latest()
    assert done is not None
    assert (done.state, done.switched, done.failed) == (ReindexState.DONE, True, 0), done
    assert done.pages_done >= IMAGES // PAGE
    assert f"re-embedded {done.done}, skipped {done.skipped}" in out
    assert "images/s" in out
    # After the switch an upload without models lands in the new collection only.
    [after] = ingest_catalog(stack, count=1, first=200)
    stack.stop_workers()

    with stack.store() as store:
        assert store.current_model() == OTHER_MODEL_ID
        assert current_model_id(stack.settings, store) == OTHER_MODEL_ID
        old_ids = {p.id for p in store.scroll(TEST_MODEL_ID, limit=1000)[0]}
        new_points = {p.id: p for p in store.scroll(OTHER_MODEL_ID, limit=1000)[0]}
        # The uploads during the job went to the old collection and were caught up.
        expected = {u.point_id for u in catalog + late if u.event.item_id != deleted}
        assert old_ids == expected
        assert set(new_points) == expected | {after.point_id}
        assert after.point_id not in old_ids
        for upload in catalog + late:
            point = new_points.get(upload.point_id)
            if point is not None:
                assert point.payload["brand"] == upload.event.metadata["brand"]
                assert point.payload["source_uri"] == upload.event.image_uri
        listed = {info.model_id: info.current for info in store.collections()}
        assert listed == {TEST_MODEL_ID: False, OTHER_MODEL_ID: True}


def test_a_killed_worker_loses_no_page(
    make_stack: MakeStack, models_dir: Path, image_host: ImageHost
) -> None:
    register_other_model(ModelRegistry(models_dir))
    stack = make_stack(overrides=image_host_settings(image_host))
    first = stack.start_worker()
    catalog = ingest_catalog(stack, host=image_host)

    # Pages of two images: the host answers the first two pages' four requests and holds the
    # third page's first one, so the worker is in the middle of that page when it dies.
    image_host.hold_after(4)
    # Published the way the CLI does it, without following.
    queued = run_cli(stack, "--to", OTHER_MODEL_ID, "--no-wait", "--page-size", "2")
    assert queued.returncode == 0, queued.stderr
    stack.wait_until(
        lambda: image_host.held >= 1, timeout=120, what="the third page to fetch its images"
    )
    middle = jobs_of(stack).latest()
    assert middle is not None
    assert (middle.state, middle.pages_done, middle.switched) == (ReindexState.RUNNING, 2, False)
    # The page's message is in the worker's hands, delivered and not acknowledged.
    assert stack.unacked() >= 1, stack.report()
    first.kill()
    image_host.release()
    stack.start_worker()  # the unacknowledged page comes back after the visibility timeout
    done = wait_job(stack, "finished", timeout=180)

    assert done.state is ReindexState.DONE, done
    assert done.switched
    assert (done.done + done.skipped, done.failed) == (IMAGES, 0)
    status = stack.cli("reindex", "--status", done.job_id)
    assert "[done]" in status.stdout
    stack.stop_workers()
    with stack.store() as store:
        assert store.current_model() == OTHER_MODEL_ID
        assert {p.id for p in store.scroll(OTHER_MODEL_ID, limit=1000)[0]} == {
            u.point_id for u in catalog
        }


def test_cli_refusals_and_the_no_worker_hint(make_stack: MakeStack, models_dir: Path) -> None:
    register_other_model(ModelRegistry(models_dir))
    stack = make_stack()

    missing = run_cli(stack, "--to", "not-installed")
    assert missing.returncode == 1
    assert "not-installed" in missing.stderr
    # No worker: the job waits in the queue and the CLI says why nothing moves.
    cli = start_cli(stack, "--to", OTHER_MODEL_ID, "--no-progress")
    stack.wait_until(
        lambda: jobs_of(stack).latest() is not None, timeout=30, what="the job to be queued"
    )
    time.sleep(NO_WORKER_HINT_SECONDS + 2)
    cli.send_signal(signal.SIGINT)  # Ctrl-C: stop following, the job stays queued
    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 130
    assert "no worker has picked the job up" in out
    assert "the job goes on in the background" in out
    queued = jobs_of(stack).latest()
    assert queued is not None
    assert queued.state is ReindexState.QUEUED
    # A worker starts: the queued job finds nothing stored and fails, saying so; a job to the
    # model that is already current is refused with advice.
    stack.start_worker()
    same = run_cli(stack, "--to", TEST_MODEL_ID, "--no-progress")

    assert same.returncode == 1, same.stdout
    assert "already the current model" in same.stdout
    assert "lookalike models register FILE --id NEW_ID" in same.stdout
    first = jobs_of(stack).job(queued.job_id)
    assert first is not None
    assert first.state is ReindexState.FAILED
    assert "no collection for model" in (first.message or "")


def run_cli(stack: QueueStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search_api.cli", "reindex", *args],
        cwd=REPO,
        env=stack.child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
