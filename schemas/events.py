"""Messages producers publish to the ingestion queue (Celery task arguments, JSON).

A producer in any language publishes a Celery task whose single argument is one of these
events as a JSON object; see the README's "Message format" section.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

EVENT_SCHEMA_VERSION = 1  # bump with a new Literal when the format changes


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    schema_version: Literal[1] = 1
    event_id: str = Field(default_factory=_new_event_id, min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=500)
    models: list[str] | None = Field(
        default=None, description="Model ids to apply to; None means every enabled model."
    )
    submitted_at: datetime = Field(default_factory=_now)


class UploadEvent(_Event):
    """A new image of an item: embed it with every enabled model and store it."""

    kind: Literal["upload"] = "upload"
    image_uri: str = Field(
        min_length=1,
        max_length=4096,
        description="blob://<sha256>, file:///path (under allowed roots) or http(s)://host/...",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Becomes the payload.")


class DeleteEvent(_Event):
    """Remove every image of an item from the collections."""

    kind: Literal["delete"] = "delete"


class UpdatePayloadEvent(_Event):
    """Change an item's metadata in place, without re-embedding."""

    kind: Literal["update_payload"] = "update_payload"
    metadata: dict[str, Any]


def with_event_id(payload: Any, task_id: str) -> Any:
    """The event of a message, its id defaulting to the message's Celery task id.

    A producer that leaves ``event_id`` out still knows the id to poll: the ``id`` it gave
    its message (the envelope's ``headers.id``). A redelivered message keeps its task id, so
    the event keeps its id too. Anything but a JSON object is returned as it is (a bad event).
    """
    if isinstance(payload, dict) and not payload.get("event_id"):
        return {**payload, "event_id": task_id}
    return payload


class EventStatus(StrEnum):
    """Where an event is in its life."""

    QUEUED = "queued"
    RECEIVED = "received"  # a worker has it (written only if the producer wrote no status)
    DONE = "done"
    FAILED = "failed"


class EventState(BaseModel):
    """The status of one event, queryable by event id."""

    event_id: str
    item_id: str | None = None
    status: EventStatus
    reason: str | None = None
    message: str | None = None
    updated_at: datetime = Field(default_factory=_now)


class DeadLetter(BaseModel):
    """An event that cannot succeed as it is, kept with its reason until retried or purged."""

    event: dict[str, Any]
    task: str
    reason: str
    message: str
    failed_at: datetime = Field(default_factory=_now)
