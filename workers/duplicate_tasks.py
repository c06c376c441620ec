"""Celery task finding a collection's duplicate groups in the background."""

from __future__ import annotations

from ingest.duplicates.jobs import run_duplicate_job
from ingest.duplicates.thresholds import resolve_threshold
from ingest.models.registry import ModelRegistry
from ingest.state.duplicate_jobs import DuplicateResults
from schemas.queue import FIND_DUPLICATES_TASK
from workers.app import app
from workers.context import WorkerContext, worker_context


def results_for(context: WorkerContext) -> DuplicateResults:
    """The duplicate results store on the worker's Redis, under the deployment's prefix."""
    return DuplicateResults(context.redis, prefix=context.settings.collection_prefix)


# A scan takes far longer than an ingestion batch: its time limits are set from the visibility
# timeout when the worker is configured (``workers.app.configure``).
@app.task(name=FIND_DUPLICATES_TASK, acks_late=True)
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
