"""Celery task re-indexing one page of the current collection into another model.

A job is a chain of short ``lookalike.reindex_page`` tasks on the ingestion queue, each of
which re-embeds one page of points and then publishes the next page's task; the last one
reconciles and switches the alias (``ingest.reindex``). Uploads and deletes share the queue,
so they keep flowing between pages. Every page is idempotent (point ids, a compare-and-set on
the page count), so a page whose worker died is simply delivered again.
"""

from __future__ import annotations

import logging

from celery import Celery

from ingest.errors import StoreUnavailable
from ingest.reindex.reindexer import Reindexer, Step
from ingest.state.reindex_jobs import ReindexJobNotFound, ReindexJobs
from schemas.queue import QUEUE, REINDEX_PAGE_TASK
from workers.app import app, retry_delay
from workers.context import WorkerContext, worker_context

log = logging.getLogger(__name__)


def jobs_for(context: WorkerContext) -> ReindexJobs:
    """The re-index jobs on the worker's Redis, under the deployment's prefix."""
    return ReindexJobs(context.redis, prefix=context.settings.collection_prefix)


def reindexer_for(context: WorkerContext) -> Reindexer:
    """A reindexer on the worker's store, models and sources."""
    return Reindexer(
        settings=context.settings,
        store=context.store,
        jobs=jobs_for(context),
        resolver=context.handler.resolver,
        load_runtime=context.handler.load_runtime,
    )


# A page takes seconds; the last one also reconciles the whole collection, which must still
# end before Redis would redeliver it: its limits come from ``workers.app.configure``.
@app.task(name=REINDEX_PAGE_TASK, acks_late=True)
def reindex_page(job_id: str, page: int, offset: str | None, attempt: int = 0) -> None:
    """Re-embed one page of a job, then queue the next one (or reconcile and switch)."""
    context = worker_context()
    reindexer = reindexer_for(context)
    try:
        step = reindexer.run_page(job_id, page, offset)
        if step.kind == "finish":
            reindexer.finish(job_id)
        elif step.kind == "page":
            _queue_page(app, reindexer.jobs, job_id, step)
    except ReindexJobNotFound:
        log.warning("re-index job %s is gone; page %d dropped", job_id, page)
    except StoreUnavailable as error:
        _retry_later(context, reindexer.jobs, job_id, page, offset, attempt, error)
    except Exception as error:
        # A bug, or Redis gone for good: the job says so instead of staying "running".
        log.exception("re-index page %d of job %s failed", page, job_id)
        try:
            reindexer.jobs.fail(job_id, f"page {page}: {type(error).__name__}: {error}")
        except Exception:
            log.exception("could not record the failure of re-index job %s", job_id)


def _queue_page(celery: Celery, jobs: ReindexJobs, job_id: str, step: Step) -> None:
    """Publish a page's task, then note that it is queued (a redelivery will not repeat it)."""
    celery.send_task(REINDEX_PAGE_TASK, args=[job_id, step.page, step.offset], queue=QUEUE)
    jobs.change(
        job_id,
        lambda job: job.model_copy(update={"pages_queued": max(job.pages_queued, step.page + 1)}),
    )


def _retry_later(
    context: WorkerContext,
    jobs: ReindexJobs,
    job_id: str,
    page: int,
    offset: str | None,
    attempt: int,
    error: StoreUnavailable,
) -> None:
    """The store is down: queue the same page again with backoff, or fail the job at last."""
    queue = context.settings.queue
    if attempt >= queue.max_retries:
        jobs.fail(job_id, f"retries exhausted on page {page}: {error}")
        return
    delay = retry_delay(queue, attempt)
    log.warning("re-index page %d of job %s: %s; retry in %ss", page, job_id, error, delay)
    reindex_page.apply_async(
        args=(job_id, page, offset), kwargs={"attempt": attempt + 1}, countdown=delay
    )
    jobs.update(job_id, message=f"store unavailable, retry {attempt + 1} in {delay}s: {error}")
