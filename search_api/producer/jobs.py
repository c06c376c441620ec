"""Starting background jobs on the workers: a duplicate scan, a re-index and its resumption.

Each job is recorded first (so a fast worker's "running" is never overwritten by "queued"),
then its task is published; a publish that fails marks the job failed with the reason.
"""

from __future__ import annotations

from celery import Celery

from ingest.state.duplicate_jobs import DuplicateResults
from ingest.state.reindex_jobs import PAGE_SIZE, ReindexJobs
from schemas.queue import FIND_DUPLICATES_TASK, QUEUE, REINDEX_PAGE_TASK
from schemas.reindex import ReindexJob, ReindexState


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


def enqueue_reindex(
    celery: Celery,
    jobs: ReindexJobs,
    target: str,
    *,
    source: str | None = None,
    drop_old: bool = False,
    allow_failures: bool = False,
    page_size: int = PAGE_SIZE,
) -> ReindexJob:
    """Record a queued job, then publish its first page; returns the job."""
    # Recorded first so that a fast worker's "running" is never overwritten by "queued".
    job = jobs.create(
        target,
        source=source,
        drop_old=drop_old,
        allow_failures=allow_failures,
        page_size=page_size,
    )
    try:
        celery.send_task(REINDEX_PAGE_TASK, args=[job.job_id, 0, None], queue=QUEUE)
    except Exception as error:
        jobs.fail(job.job_id, f"not queued: {type(error).__name__}: {error}")
        raise
    return job


def resume_reindex(
    celery: Celery, jobs: ReindexJobs, job_id: str, *, allow_failures: bool = False
) -> ReindexJob:
    """Queue a stalled or failed job's next step again (extra deliveries are harmless).

    ``allow_failures`` lets a job that stopped over failed images switch this time.
    """
    job = jobs.require(job_id)
    if job.state is ReindexState.DONE:
        return job
    state = ReindexState.QUEUED if job.source is None else ReindexState.RUNNING
    if job.pages_done and job.next_offset is None:
        state = ReindexState.SWITCHING  # every page done: the step left is the finish
    resumed = jobs.update(
        job_id,
        state=state,
        message=None,
        finished_at=None,
        allow_failures=job.allow_failures or allow_failures,
    )
    if state is ReindexState.SWITCHING:
        # The last page's redelivery runs the finish: pages_done == page + 1, nothing queued.
        page = resumed.pages_done - 1
        jobs.update(job_id, pages_queued=resumed.pages_done)
        celery.send_task(REINDEX_PAGE_TASK, args=[job_id, page, None], queue=QUEUE)
    else:
        celery.send_task(
            REINDEX_PAGE_TASK, args=[job_id, resumed.pages_done, resumed.next_offset], queue=QUEUE
        )
    return jobs.require(job_id)
