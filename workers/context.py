"""What a worker process needs, built once per process on first use (models, store, Redis)."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Any

import redis
from celery import signals
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ingest.images.sources import SourceResolver
from ingest.ingestion.handler import EventHandler
from ingest.models.runtime import load_runtime
from ingest.state.events import EventTracker
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from schemas.events import DeadLetter, EventStatus
from schemas.settings import Settings
from schemas.settings_errors import BAD_SETTINGS_STATUS, InvalidSettings, read_settings
from workers.app import app

# Status writes ride out a broker restart (about a minute of retries) instead of failing the
# batch: celery-batches acknowledges a batch's messages whether the task returns or raises,
# so a write that gave up after redis-py's default retries (a few seconds) would leave the
# batch's events "queued" forever once Redis is back, with nothing left in the queue to redo them.
STATUS_WRITE_RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=60)


@dataclass
class WorkerContext:
    """Settings, the store, the event handler and the status tracker of this process."""

    settings: Settings
    store: VectorStore
    handler: EventHandler
    tracker: EventTracker

    @property
    def redis(self) -> redis.Redis:
        """The queue's Redis, where every ``ingest.state`` store lives."""
        return self.tracker.client

    def fail(
        self, event: dict[str, Any], task: str, reason: str, message: str, event_id: str
    ) -> None:
        """Mark an event failed and keep it as a dead letter with its reason."""
        item_id = event.get("item_id") if isinstance(event.get("item_id"), str) else None
        self.tracker.mark(
            event_id, EventStatus.FAILED, item_id=item_id, reason=reason, message=message
        )
        self.tracker.add_dead_letter(
            DeadLetter(event=event, task=task, reason=reason, message=message), event_id
        )


# Set by an embedded stack that runs a worker inside a process already holding the store.
_provided: tuple[Settings, VectorStore] | None = None


@signals.worker_init.connect
def refuse_bad_settings(**_: Any) -> None:
    """At worker start, before any broker connection: bad settings print one line per
    variable and exit with 2, instead of failing every task later with a traceback."""
    if _provided is not None:
        return  # an embedded worker, on settings its process has already read
    try:
        read_settings()
    except InvalidSettings as error:
        for line in error.lines:
            print(line, file=sys.stderr, flush=True)
        raise SystemExit(BAD_SETTINGS_STATUS) from None


def provide_store(settings: Settings, store: VectorStore) -> None:
    """Make this process's worker use these settings and this open store.

    Local-mode Qdrant can be opened by one process, once: the one-process stack (`lookalike
    up`) opens it for its API and hands the same store to its worker thread. Call before the
    first task runs.
    """
    global _provided
    if worker_context.cache_info().currsize:
        raise RuntimeError("the worker context is already built; provide the store earlier")
    _provided = (settings, store)


@functools.cache
def worker_context() -> WorkerContext:
    """The process-wide context; the store and models open lazily, once."""

    if _provided is not None:
        settings, store = _provided
    else:
        settings = Settings()
        store = open_store(settings)
    client = redis.Redis.from_url(app.conf.broker_url, retry=STATUS_WRITE_RETRY)
    return WorkerContext(
        settings=settings,
        store=store,
        handler=EventHandler(
            settings, store, SourceResolver(settings), functools.partial(load_runtime, settings)
        ),
        tracker=EventTracker(client, prefix=settings.collection_prefix),
    )
