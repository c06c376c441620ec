"""The Celery app of the workers, and how it is configured when a worker is created."""

from __future__ import annotations

from celery import Celery
from celery.utils.time import get_exponential_backoff_interval

from schemas.queue import FIND_DUPLICATES_TASK, INGEST_TASK, REINDEX_PAGE_TASK, celery_config
from schemas.settings import QueueSettings, Settings

app = Celery(
    "lookalike",
    include=[
        "workers.tasks",
        "workers.duplicate_tasks",
        "workers.reindex_tasks",
        "workers.receipts",
    ],
)

# A long task must end before Redis would redeliver it to a second worker (visibility
# timeout): its soft limit then fails it cleanly. The hard limit follows 30 s later.
LONG_TASKS = (FIND_DUPLICATES_TASK, REINDEX_PAGE_TASK)
HARD_LIMIT_MARGIN = 30


def long_task_soft_limit(queue: QueueSettings) -> int:
    """Soft time limit of a duplicate scan or a re-index page (the last one reconciles)."""
    return max(queue.soft_time_limit, queue.resolved_visibility_timeout - 60)


def configure(celery: Celery, settings: Settings, broker_url: str) -> Celery:
    """Point the app at a broker and size its tasks from the settings (read now, not at import)."""
    celery.conf.update(celery_config(settings, broker_url))
    queue = settings.queue
    # The task modules (the app's ``include``) are imported now, as a worker would at start,
    # so that their tasks exist to be sized; an app without them (a test's) has nothing to size.
    celery.loader.import_default_modules()
    tasks = celery.tasks
    ingest = tasks.get(INGEST_TASK)
    if ingest is not None:
        # celery-batches reads these when the worker starts consuming.
        ingest.flush_every = queue.batch_size  # type: ignore[attr-defined]
        ingest.flush_interval = queue.flush_interval  # type: ignore[attr-defined]
    soft_limit = long_task_soft_limit(queue)
    for name in LONG_TASKS:
        if name in tasks:
            tasks[name].soft_time_limit = soft_limit
            tasks[name].time_limit = soft_limit + HARD_LIMIT_MARGIN
    return celery


def retry_delay(queue: QueueSettings, attempt: int) -> int:
    """Seconds before retry ``attempt + 1``: exponential backoff with full jitter, capped."""
    return int(
        get_exponential_backoff_interval(
            factor=queue.retry_backoff,
            retries=attempt,
            maximum=queue.retry_backoff_max,
            full_jitter=True,
        )
    )
