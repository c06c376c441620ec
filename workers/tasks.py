"""Celery tasks: thin wrappers that parse events, call ``ingest.ingestion`` and record outcomes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Task
from celery_batches import Batches, SimpleRequest
from pydantic import ValidationError

from ingest.errors import StoreUnavailable
from ingest.ingestion.handler import EventResult, Outcome
from schemas.events import (
    DeleteEvent,
    EventState,
    EventStatus,
    UpdatePayloadEvent,
    UploadEvent,
    with_event_id,
)
from schemas.queue import DELETE_TASK, INGEST_TASK, UPDATE_PAYLOAD_TASK
from workers.app import app, retry_delay
from workers.context import WorkerContext, worker_context

log = logging.getLogger(__name__)


def _event_payload(request: SimpleRequest) -> Any:
    return with_event_id(
        request.args[0] if request.args else request.kwargs.get("event"), request.id
    )


# Batch size and flush interval come from the settings when the worker is configured
# (``workers.app.configure``).
@app.task(base=Batches, name=INGEST_TASK, acks_late=True)
def ingest(requests: Sequence[SimpleRequest]) -> None:
    """Embed and store a batch of upload events (uploads arrive one by one, ORT likes batches)."""
    context = worker_context()
    events: list[UploadEvent] = []
    attempts: dict[str, int] = {}
    for request in requests:
        payload = _event_payload(request)
        try:
            event = UploadEvent.model_validate(payload)
        except ValidationError as error:
            event_id = payload.get("event_id") if isinstance(payload, dict) else None
            context.fail(
                payload if isinstance(payload, dict) else {"raw": repr(payload)},
                INGEST_TASK,
                "bad_event",
                str(error),
                str(event_id or request.id),
            )
            continue
        events.append(event)
        attempts[event.event_id] = int(request.kwargs.get("attempt", 0))
    by_id = {event.event_id: event for event in events}
    try:
        results = context.handler.uploads(events)
    except Exception as error:
        # celery-batches acknowledges a batch even when it raises: without this, a bug would
        # leave every event of the batch "queued" for ever. Dead letters can be retried once
        # the cause is fixed.
        log.exception("ingest batch failed unexpectedly")
        message = f"{type(error).__name__}: {error}"
        for event in events:
            _dead_letter(context, event, "internal_error", message)
        return
    _settle(context, results, by_id, attempts)


def _settle(
    context: WorkerContext,
    results: Sequence[EventResult],
    events: dict[str, UploadEvent],
    attempts: dict[str, int],
) -> None:
    done = [
        EventState(event_id=r.event_id, item_id=r.item_id, status=EventStatus.DONE)
        for r in results
        if r.outcome is Outcome.DONE
    ]
    context.tracker.record(done)
    for result in results:
        event = events[result.event_id]
        if result.outcome is Outcome.FAILED:
            _dead_letter(context, event, result.reason or "failed", result.message or "")
        elif result.outcome is Outcome.RETRY:
            _retry_later(context, event, result, attempts[result.event_id])


def _dead_letter(context: WorkerContext, event: UploadEvent, reason: str, message: str) -> None:
    context.fail(event.model_dump(mode="json"), INGEST_TASK, reason, message, event.event_id)


def _retry_later(
    context: WorkerContext, event: UploadEvent, result: EventResult, attempt: int
) -> None:
    """Re-queue a transiently failed event with exponential backoff and full jitter.

    A batch task cannot use Celery's per-task ``self.retry``, so it publishes the event again
    with a countdown computed by Celery's own backoff helper, then lets the original be acked.
    """
    queue = context.settings.queue
    if attempt >= queue.max_retries:
        reason = f"retries_exhausted:{result.reason}"
        _dead_letter(context, event, reason, result.message or "")
        return
    delay = retry_delay(queue, attempt)
    payload = event.model_dump(mode="json")
    context.tracker.remember(INGEST_TASK, [payload])  # refreshes its age for workers.recovery
    ingest.apply_async(args=[payload], kwargs={"attempt": attempt + 1}, countdown=delay)
    context.tracker.mark(
        event.event_id,
        EventStatus.QUEUED,
        item_id=event.item_id,
        reason=result.reason,
        message=f"retry {attempt + 1} in {delay}s: {result.message}",
    )


def _apply_single(
    task: Task,  # type: ignore[type-arg]
    result: EventResult,
    context: WorkerContext,
    event: dict[str, Any],
) -> None:
    if result.outcome is Outcome.RETRY:
        # Celery's own retry, with the settings' backoff and full jitter; once the retries
        # are exhausted it raises the error and ``on_failure`` keeps a dead letter.
        queue = context.settings.queue
        raise task.retry(
            exc=StoreUnavailable(result.message or "store unavailable"),
            countdown=retry_delay(queue, task.request.retries),
            max_retries=queue.max_retries,
        )
    if result.outcome is Outcome.FAILED:
        context.fail(
            event,
            task.name,
            result.reason or "failed",
            result.message or "",
            result.event_id,
        )
        return
    context.tracker.mark(result.event_id, EventStatus.DONE, item_id=result.item_id)


class _DeadLetterWhenExhausted(Task):  # type: ignore[type-arg]  # generic in the stubs only
    """Keeps the event as a dead letter once Celery gives up retrying, instead of dropping it."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Called by Celery when the task failed for good (retries exhausted)."""
        event = args[0] if args and isinstance(args[0], dict) else {"raw": repr(args)}
        reason = f"retries_exhausted:{type(exc).__name__}"
        worker_context().fail(
            event, self.name, reason, str(exc), str(event.get("event_id", task_id))
        )


def _retrying_task(name: str) -> Callable[[Callable[..., None]], Task[Any, Any]]:
    """A plain task that retries itself on transient store failures (see ``_apply_single``)."""
    return app.task(base=_DeadLetterWhenExhausted, name=name, acks_late=True, bind=True)


@_retrying_task(DELETE_TASK)
def delete(self: Task, event: dict[str, Any]) -> None:  # type: ignore[type-arg]
    """Remove an item from every targeted collection."""
    context = worker_context()
    event = with_event_id(event, str(self.request.id))
    try:
        parsed = DeleteEvent.model_validate(event)
    except ValidationError as error:
        context.fail(event, DELETE_TASK, "bad_event", str(error), str(event.get("event_id")))
        return
    _apply_single(self, context.handler.delete(parsed), context, event)


@_retrying_task(UPDATE_PAYLOAD_TASK)
def update_payload(self: Task, event: dict[str, Any]) -> None:  # type: ignore[type-arg]
    """Merge new metadata into an item's points without re-embedding."""
    context = worker_context()
    event = with_event_id(event, str(self.request.id))
    try:
        parsed = UpdatePayloadEvent.model_validate(event)
    except ValidationError as error:
        context.fail(
            event, UPDATE_PAYLOAD_TASK, "bad_event", str(error), str(event.get("event_id"))
        )
        return
    _apply_single(self, context.handler.update_payload(parsed), context, event)
