"""The ingest batch task's own logic: an unexpected error dead-letters, never strands, a batch."""

from __future__ import annotations

import subprocess
import sys
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


def test_configuring_a_fresh_worker_app_sizes_its_tasks_from_the_settings(tmp_path: Any) -> None:
    # In a new process, as `lookalike worker` runs: the task modules are not imported yet when
    # the app is configured, and the batch shape must still come from the settings.
    script = (
        "from schemas.queue import FIND_DUPLICATES_TASK, INGEST_TASK\n"
        "from schemas.settings import QueueSettings, Settings\n"
        "from workers.app import app, configure\n"
        "queue = QueueSettings(batch_size=7, flush_interval=0.25, visibility_timeout=900)\n"
        f"settings = Settings(data_dir={str(tmp_path)!r}, queue=queue)\n"
        "configure(app, settings, 'redis://127.0.0.1:1/0')\n"
        "ingest, scan = app.tasks[INGEST_TASK], app.tasks[FIND_DUPLICATES_TASK]\n"
        "print(ingest.flush_every, ingest.flush_interval, scan.soft_time_limit, scan.time_limit)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["7", "0.25", "840", "870"]
