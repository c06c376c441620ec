"""A collection-wide duplicate job run to done or failed, its progress recorded as it goes."""

from __future__ import annotations

from ingest.duplicates.groups import MAX_NEIGHBORS, SCAN_BATCH, find_duplicate_groups
from ingest.state.duplicate_jobs import DuplicateResults
from ingest.store.base import VectorStore
from schemas.duplicates import (
    DuplicateJob,
    DuplicateJobStatus,
)


def run_duplicate_job(
    store: VectorStore,
    results: DuplicateResults,
    job_id: str,
    *,
    model_id: str,
    threshold: float,
    transitive: bool = False,
    batch: int = SCAN_BATCH,
    max_neighbors: int = MAX_NEIGHBORS,
) -> DuplicateJob:
    """Run a recorded (or unrecorded) job to done or failed, reporting progress as it goes."""
    job = results.job(job_id)
    if job is not None and job.status is DuplicateJobStatus.DONE:
        return job  # a redelivered message of a job that already finished
    if job is None:
        results.create_job(model_id, threshold=threshold, transitive=transitive, job_id=job_id)
    results.start(job_id)
    try:
        groups = find_duplicate_groups(
            store,
            model_id,
            threshold=threshold,
            transitive=transitive,
            batch=batch,
            max_neighbors=max_neighbors,
            progress=lambda scanned, total: results.progress(job_id, scanned, total),
            hidden_pairs=results.hidden_pairs(model_id),
        )
    except Exception as error:
        results.fail(job_id, f"{type(error).__name__}: {error}")
        raise
    return results.finish(job_id, groups)
