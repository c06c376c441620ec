"""Publishing events to the ingestion queue, and re-queueing dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery

from ingest.state.events import EventTracker
from schemas.events import DeleteEvent, EventState, EventStatus, UpdatePayloadEvent, UploadEvent
from schemas.queue import DELETE_TASK, INGEST_TASK, QUEUE, UPDATE_PAYLOAD_TASK

_TASK_FOR = {"upload": INGEST_TASK, "delete": DELETE_TASK, "update_payload": UPDATE_PAYLOAD_TASK}


class Publisher:
    """Sends events as Celery tasks (JSON) and records them as queued first."""

    def __init__(self, celery: Celery, tracker: EventTracker) -> None:
        self.celery = celery
        self.tracker = tracker

    @classmethod
    def connect(cls, celery: Celery, prefix: str = "lookalike") -> Publisher:
        """A publisher whose tracker uses the app's broker Redis."""
        return cls(
            celery, EventTracker(redis.Redis.from_url(celery.conf.broker_url), prefix=prefix)
        )

    def publish(
        self, events: Sequence[UploadEvent | DeleteEvent | UpdatePayloadEvent]
    ) -> list[str]:
        """Queue events; returns their ids. Status is written before the message so that a
        fast worker's "done" is never overwritten by "queued"."""
        self.tracker.record(
            EventState(event_id=e.event_id, item_id=e.item_id, status=EventStatus.QUEUED)
            for e in events
        )
        with self.celery.producer_or_acquire() as producer:
            for event in events:
                self.send(_TASK_FOR[event.kind], event.model_dump(mode="json"), producer=producer)
        return [event.event_id for event in events]

    def send(self, task: str, event: dict[str, Any], **options: Any) -> None:
        """Publish one event as a task, remembered as pending until a worker settles it."""
        self.tracker.remember(task, [event])
        self.celery.send_task(task, args=[event], queue=QUEUE, **options)

    def retry_dead_letter(self, event_id: str) -> bool:
        """Re-queue one dead letter as it was; False if there is no such dead letter."""
        letter = self.tracker.take_dead_letter(event_id)
        if letter is None:
            return False
        item_id = letter.event.get("item_id")
        self.tracker.mark(
            event_id, EventStatus.QUEUED, item_id=item_id if isinstance(item_id, str) else None
        )
        self.send(letter.task, letter.event)
        return True

    def queue_depth(self) -> int:
        """Messages waiting in Redis (not yet taken by a worker)."""
        return int(self.tracker.client.llen(QUEUE))
