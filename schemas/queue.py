"""The ingestion queue's contract with every producer and consumer.

Its Redis list, its task names (public: producers in other languages send them, see the
README) and the Celery configuration both sides apply. Plain data: the Celery apps are built
by ``workers.app`` (consumers) and ``search_api.producer`` (the API and the command line).
"""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings

QUEUE = "lookalike"
INGEST_TASK = "lookalike.ingest"
DELETE_TASK = "lookalike.delete"
UPDATE_PAYLOAD_TASK = "lookalike.update_payload"
FIND_DUPLICATES_TASK = "lookalike.find_duplicates"
REINDEX_PAGE_TASK = "lookalike.reindex_page"

# Longest pause between two sweeps for messages whose visibility timeout has passed.
MAX_RESTORE_INTERVAL = 10


def restore_interval(visibility_timeout: int) -> int:
    """Seconds between sweeps: a tenth of the visibility timeout, between 1 and 10."""
    return max(1, min(MAX_RESTORE_INTERVAL, visibility_timeout // 10))


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    """Celery settings for a broker: JSON messages, late acks, bounded tasks and memory."""
    queue = settings.queue
    visibility_timeout = queue.resolved_visibility_timeout
    return {
        "broker_url": broker_url,
        "result_backend": broker_url,
        "task_ignore_result": True,  # progress lives in the event status store, not in results
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": QUEUE,
        # At least once: a message is acknowledged only after its batch is stored, and a
        # worker that dies mid-batch gets its messages redelivered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Redis redelivers unacknowledged messages after this; it must exceed the slowest
        # batch, retry countdowns included, or a healthy batch would be delivered twice.
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            # kombu only sweeps for overdue messages every interval x throttle seconds
            # (10 x 10 by default), so without these a killed worker's messages come back
            # up to 100 s after the visibility timeout rather than at it.
            "unacked_restore_interval": restore_interval(visibility_timeout),
            "unacked_restore_throttle": 1,
        },
        "result_backend_transport_options": {"visibility_timeout": visibility_timeout},
        # Batching needs a full batch of messages in hand: prefetch two batches.
        "worker_prefetch_multiplier": 2 * queue.batch_size,
        "task_soft_time_limit": queue.soft_time_limit,
        "task_time_limit": queue.time_limit,
        "worker_max_memory_per_child": queue.max_memory_per_child_kb,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # keep reconnecting while Redis restarts
        "worker_hijack_root_logger": False,
    }
