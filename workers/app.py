"""The Celery app: Redis broker, JSON messages, late acks, bounded tasks and worker memory."""

from __future__ import annotations

from celery import Celery
from celery.utils.time import get_exponential_backoff_interval

from schemas.settings import QueueSettings, Settings

# Task names are the public contract with producers in other languages (see the README).
INGEST_TASK = "lookalike.ingest"
DELETE_TASK = "lookalike.delete"
UPDATE_PAYLOAD_TASK = "lookalike.update_payload"
QUEUE = "lookalike"

app = Celery(
    "lookalike", include=["workers.tasks", "workers.duplicate_tasks", "workers.reindex_tasks"]
)

# Longest pause between two sweeps for messages whose visibility timeout has passed.
MAX_RESTORE_INTERVAL = 10


def restore_interval(visibility_timeout: int) -> int:
    """Seconds between sweeps: a tenth of the visibility timeout, between 1 and 10."""
    return max(1, min(MAX_RESTORE_INTERVAL, visibility_timeout // 10))


def configure(celery: Celery, settings: Settings, broker_url: str) -> Celery:
    """Point the app at a broker and apply the queue decisions from DESIGN.md."""
    queue = settings.queue
    celery.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        task_ignore_result=True,  # progress lives in the event status store, not in results
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        # At least once: a message is acknowledged only after its batch is stored, and a
        # worker that dies mid-batch gets its messages redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Redis redelivers unacknowledged messages after this; it must exceed the slowest
        # batch, retry countdowns included, or a healthy batch would be delivered twice.
        broker_transport_options={
            "visibility_timeout": queue.visibility_timeout,
            # kombu only sweeps for overdue messages every interval x throttle seconds
            # (10 x 10 by default), so without these a killed worker's messages come back
            # up to 100 s after the visibility timeout rather than at it.
            "unacked_restore_interval": restore_interval(queue.visibility_timeout),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": queue.visibility_timeout},
        # Batching needs a full batch of messages in hand: prefetch two batches.
        worker_prefetch_multiplier=2 * queue.batch_size,
        task_soft_time_limit=queue.soft_time_limit,
        task_time_limit=queue.time_limit,
        worker_max_memory_per_child=queue.max_memory_per_child_kb,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep reconnecting while Redis restarts
        worker_hijack_root_logger=False,
    )
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
