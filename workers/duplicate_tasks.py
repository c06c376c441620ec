"""Celery task finding a collection's duplicate groups in the background, and its enqueuer."""

from __future__ import annotations

from celery import Celery

from ingest.duplicates.jobs import run_duplicate_job
from ingest.duplicates.thresholds import resolve_threshold
from ingest.models.registry import ModelRegistry
from ingest.state.duplicate_jobs import DuplicateResults
from schemas.settings import Settings
from workers.app import QUEUE, app
from workers.context import WorkerContext, worker_context

FIND_DUPLICATES_TASK = "lookalike.find_duplicates"

_QUEUE = Settings().queue
# A scan takes far longer than an ingestion batch, but must end before Redis would redeliver
# it to a second worker (visibility timeout): the soft limit then fails the job cleanly.
_SOFT_LIMIT = max(_QUEUE.soft_time_limit, _QUEUE.visibility_timeout - 60)


def results_for(context: WorkerContext) -> DuplicateResults:
    """The duplicate results store on the worker's Redis, under the deployment's prefix."""
    return DuplicateResults(context.tracker.client, prefix=context.settings.collection_prefix)


@app.task(
    name=FIND_DUPLICATES_TASK,
    acks_late=True,
    soft_time_limit=_SOFT_LIMIT,
    time_limit=_SOFT_LIMIT + 30,
)
def find_duplicates(model_id: str, threshold: float | None, transitive: bool, job_id: str) -> None:
    """Find and store a model's duplicate groups; the job records progress and outcome."""
    context = worker_context()
    # Producers other than ``enqueue_find_duplicates`` may leave the threshold to the model.
    resolved = resolve_threshold(ModelRegistry(context.settings.models_dir), model_id, threshold)
    run_duplicate_job(
        context.store,
        results_for(context),
        job_id,
        model_id=model_id,
        threshold=resolved,
        transitive=transitive,
    )


def enqueue_find_duplicates(
    celery: Celery,
    results: DuplicateResults,
    model_id: str,
    *,
    threshold: float,
    transitive: bool = False,
) -> str:
    """Record a queued job, then publish its task; returns the job id."""
    # Recorded first so that a fast worker's "running" is never overwritten by "queued".
    job = results.create_job(model_id, threshold=threshold, transitive=transitive)
    try:
        celery.send_task(
            FIND_DUPLICATES_TASK,
            args=[model_id, threshold, transitive, job.job_id],
            queue=QUEUE,
        )
    except Exception as error:
        results.fail(job.job_id, f"not queued: {type(error).__name__}: {error}")
        raise
    return job.job_id
