"""Re-indexing end to end: real Redis, real `lookalike worker` processes, the real CLI.

The local store can be held by one process at a time and the worker holds it, so while a job
runs the test watches it through its record in Redis (the alias has not moved: searches still
go to the old collection) and reads the store once the workers are stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from ingest.registry import ModelRegistry
from ingest.reindex import ReindexJobs
from ingest.runtime import current_model_id
from schemas.events import DeleteEvent, EventStatus
from schemas.reindex import ReindexJob, ReindexState
from search_api.cli_reindex import NO_WORKER_HINT_SECONDS
from tests.ingest.test_reindex import OTHER_MODEL_ID, register_other_model
from tests.support import TEST_MODEL_ID
from tests.workers.conftest import MakeStack
from tests.workers.queue_support import REPO, QueueStack, Upload, distinct_png

IMAGES = 40
PAGE = 1  # tiny pages: forty tasks, with uploads and deletes handled in between


def jobs_of(stack: QueueStack) -> ReindexJobs:
    return ReindexJobs(stack.client, prefix=stack.settings.collection_prefix)


def ingest_catalog(stack: QueueStack, count: int = IMAGES, first: int = 0) -> list[Upload]:
    uploads = [
        stack.upload(f"item-{i:03d}", distinct_png(i), {"brand": f"brand-{i % 4}", "price": i})
        for i in range(first, first + count)
    ]
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
    make_stack: MakeStack, models_dir: Path
) -> None:
    register_other_model(ModelRegistry(models_dir))
    # Upload batches flush within 0.1 s, well inside the job's forty one-image pages.
    stack = make_stack(overrides={"LOOKALIKE_QUEUE__FLUSH_INTERVAL": "0.1"})
    stack.start_worker()
    catalog = ingest_catalog(stack)

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


def test_a_killed_worker_loses_no_page(make_stack: MakeStack, models_dir: Path) -> None:
    register_other_model(ModelRegistry(models_dir))
    stack = make_stack()
    first = stack.start_worker()
    catalog = ingest_catalog(stack)

    # Published the way the CLI does it, without following.
    queued = run_cli(stack, "--to", OTHER_MODEL_ID, "--no-wait", "--page-size", "2")
    assert queued.returncode == 0, queued.stderr
    wait_job(stack, "running", timeout=120)
    first.freeze()  # in the middle of the chain of pages
    # The next page's message is in the frozen worker's hands (unacknowledged) or queued.
    assert stack.unacked() + stack.publisher.queue_depth() >= 1
    frozen = jobs_of(stack).latest()
    assert frozen is not None
    assert not frozen.finished, "the job ended before the worker could be killed"
    first.kill()
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
