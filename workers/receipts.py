"""A ``received`` status as soon as a worker takes an event, for producers that wrote none.

Our own publishers write ``queued`` before they send; a producer in another language that only
pushes the documented message leaves its event without a status until it is done, and a poll
in between would answer "never queued". Celery's ``task_received`` signal fires in the worker
the moment a message is taken off the queue (celery-batches sends it too, before the batch
waits to fill), so the status is written there, only where none exists yet.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis
from celery import signals

from ingest.state.events import EventTracker
from schemas.events import with_event_id
from schemas.queue import DELETE_TASK, INGEST_TASK, UPDATE_PAYLOAD_TASK
from schemas.settings import Settings
from workers.app import app

log = logging.getLogger(__name__)

EVENT_TASKS = frozenset({INGEST_TASK, DELETE_TASK, UPDATE_PAYLOAD_TASK})


@functools.cache
def _tracker() -> EventTracker:
    # Statuses only: the consumer (a prefork worker's parent process) never opens the store.
    return EventTracker(
        redis.Redis.from_url(app.conf.broker_url), prefix=Settings().collection_prefix
    )


@signals.task_received.connect
def record_receipt(request: Any = None, **_: Any) -> None:
    """Mark a taken event ``received`` unless it already has a status."""
    if request is None or request.name not in EVENT_TASKS:
        return
    args = request.args or [request.kwargs.get("event")]
    event = with_event_id(args[0] if args else None, request.id)
    if not isinstance(event, dict):
        return  # a bad event: the task itself makes it a dead letter
    item_id = event.get("item_id") if isinstance(event.get("item_id"), str) else None
    try:
        _tracker().mark_received(str(event["event_id"]), item_id=item_id)
    except redis.RedisError as error:  # a status is not worth losing the message over
        log.warning("could not record event %s as received: %s", event["event_id"], error)
