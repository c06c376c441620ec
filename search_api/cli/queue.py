"""Queue commands of the ``lookalike`` CLI: worker, queued ingestion, status, dead letters."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence

import click
from celery import Celery
from tqdm import tqdm

from ingest.state.events import EventTracker
from schemas.events import EventState, EventStatus, UploadEvent
from schemas.settings import Settings

POLL_SECONDS = 0.5


@contextlib.contextmanager
def celery_for(settings: Settings) -> Iterator[Celery]:
    """The configured Celery app, on LOOKALIKE_REDIS_URL or an embedded Redis for the duration."""
    from search_api.cli.embedded.redis_server import redis_url_for
    from workers.app import app, configure

    url, embedded = redis_url_for(settings)
    try:
        yield configure(app, settings, url)
    finally:
        if embedded is not None:
            # Shuts the server down only if this process started it; the append-only file
            # keeps whatever is still queued for the next start.
            embedded.stop()


def run_worker(settings: Settings, concurrency: int | None, loglevel: str) -> None:
    """Start a Celery worker on the ingestion queue (blocks until stopped)."""
    from workers.app import QUEUE

    if settings.qdrant_url is None and (concurrency or 1) > 1:
        raise click.UsageError(
            "the embedded (local-mode) store can be opened by one process only: run a Qdrant "
            "server and set LOOKALIKE_QDRANT_URL to use --concurrency > 1"
        )
    processes = concurrency or (settings.worker_processes if settings.qdrant_url else 1)
    # Worker processes read their settings from the environment: share the thread rule
    # (ONNX threads per session x processes <= cores) with them.
    os.environ["LOOKALIKE_WORKER_PROCESSES"] = str(processes)
    from workers.publisher import Publisher
    from workers.recovery import start_recovery

    with celery_for(settings) as celery:
        stop_recovery = start_recovery(
            celery,
            Publisher.connect(celery, settings.collection_prefix).tracker,
            interval=settings.queue.recovery_interval,
            min_age=settings.queue.recovery_min_age,
        )
        try:
            celery.worker_main(
                [
                    "worker",
                    f"--loglevel={loglevel}",
                    f"--concurrency={processes}",
                    f"--queues={QUEUE}",
                    "--hostname=lookalike@%h",
                    "--without-gossip",
                    "--without-mingle",
                ]
            )
        finally:
            stop_recovery.set()


def queue_ingest(
    settings: Settings,
    jobs: Sequence[UploadEvent],
    *,
    progress: bool,
    wait: bool,
) -> None:
    """Publish upload events and, with ``wait``, follow the workers' progress until done."""
    from workers.publisher import Publisher

    with celery_for(settings) as celery:
        publisher = Publisher.connect(celery, settings.collection_prefix)
        event_ids = publisher.publish(jobs)
        click.echo(f"queued {len(event_ids)} upload events")
        if wait and event_ids:
            follow(publisher.tracker, event_ids, progress=progress)


def follow(tracker: EventTracker, event_ids: Sequence[str], *, progress: bool) -> None:
    """Progress bar fed by the workers' status updates; prints failures at the end."""
    started = time.perf_counter()
    settled: list[EventState] = []
    with tqdm(total=len(event_ids), unit="img", disable=not progress, desc="workers") as bar:
        while True:
            states = tracker.statuses(event_ids)
            settled = [s for s in states if s and s.status is not EventStatus.QUEUED]
            bar.update(len(settled) - bar.n)
            if len(settled) == len(event_ids):
                break
            time.sleep(POLL_SECONDS)
    failed = [s for s in settled if s.status is EventStatus.FAILED]
    seconds = time.perf_counter() - started
    click.echo(
        f"done {len(settled) - len(failed)}, failed {len(failed)} in {seconds:.1f}s "
        f"({(len(settled) - len(failed)) / max(seconds, 1e-9):.1f} images/s)"
    )
    for state in failed:
        click.echo(f"  failed {state.item_id} [{state.reason}] {state.message}")
    if failed:
        click.echo("see `lookalike deadletters list`; `lookalike deadletters retry --all`")


def print_statuses(tracker: EventTracker, event_ids: Sequence[str]) -> None:
    """One line per event: id, status, item, reason."""
    for event_id, state in zip(event_ids, tracker.statuses(event_ids), strict=True):
        if state is None:
            click.echo(f"{event_id}  unknown (never queued, or older than 7 days)")
        else:
            reason = f" [{state.reason}] {state.message or ''}" if state.reason else ""
            click.echo(f"{event_id}  {state.status.value:<7} {state.item_id}{reason}")
