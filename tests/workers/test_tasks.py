"""The ingest batch task's own logic: an unexpected error dead-letters, never strands, a batch."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery_batches import SimpleRequest

from ingest.ingestion.handler import EventResult
from ingest.state.events import EventTracker
from schemas.events import EventStatus, UploadEvent
from schemas.queue import INGEST_TASK
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from workers import tasks
from workers.context import WorkerContext


class BrokenHandler:
    """Failure injection: the handler hits a bug."""

    def uploads(self, events: Any) -> list[EventResult]:
        raise RuntimeError("a bug")


def _request(payload: object) -> SimpleRequest:
    return SimpleRequest("task-id", INGEST_TASK, [payload], {}, {}, "host", False, None, None, {})


def test_an_unexpected_error_dead_letters_the_whole_batch(
    redis_server: EmbeddedRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = EventTracker(redis.Redis.from_url(redis_server.url))
    context = WorkerContext(settings, store=None, handler=BrokenHandler(), tracker=tracker)  # type: ignore[arg-type]
    monkeypatch.setattr(tasks, "worker_context", lambda: context)
    events = [UploadEvent(item_id=f"i{n}", image_uri="blob://" + "b" * 64) for n in range(3)]
    tracker.remember(INGEST_TASK, [e.model_dump(mode="json") for e in events])
    tasks.ingest.run([_request(e.model_dump(mode="json")) for e in events])
    states = tracker.statuses([e.event_id for e in events])
    assert {(s.status, s.reason) for s in states if s} == {(EventStatus.FAILED, "internal_error")}
    letters = dict(tracker.dead_letters())
    assert set(letters) == {e.event_id for e in events}
    assert all("RuntimeError: a bug" in letter.message for letter in letters.values())
    assert tracker.pending() == []  # settled: the recovery sweep will not resend them
