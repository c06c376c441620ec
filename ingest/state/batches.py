"""The admin page's uploads as batches: which events one upload made, kept as long as statuses."""

from __future__ import annotations

import json
import uuid

import redis
from pydantic import BaseModel, Field

from ingest.state.events import STATUS_TTL
from ingest.state.keys import Keys


class BatchEntry(BaseModel):
    """One upload of a batch."""

    event_id: str
    item_id: str
    filename: str
    image_uri: str


class BatchRefusal(BaseModel):
    """A file of the upload that was refused (nothing of it stored or queued), and why."""

    filename: str
    item_id: str
    reason: str  # as in dead letters: not_an_image, empty, truncated ...
    message: str


class Batch(BaseModel):
    """The events of one upload from the admin page, its refused files and its notes."""

    batch_id: str
    entries: list[BatchEntry] = Field(default_factory=list)
    # Defaults, so that batches saved before refusals were kept still read.
    refused: list[BatchRefusal] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Batches:
    """Batches in Redis, next to the event statuses and for as long (a week)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    def save(
        self,
        entries: list[BatchEntry],
        refused: list[BatchRefusal] | None = None,
        notes: list[str] | None = None,
    ) -> Batch:
        """Keep a new batch; returns it with its id."""
        batch = Batch(
            batch_id=uuid.uuid4().hex, entries=entries, refused=refused or [], notes=notes or []
        )
        self.client.set(
            self.keys.admin_batch(batch.batch_id), batch.model_dump_json(), ex=STATUS_TTL
        )
        return batch

    def get(self, batch_id: str) -> Batch | None:
        """A batch, or None if unknown or expired."""
        if not batch_id.isalnum() or len(batch_id) > 64:
            return None
        raw = self.client.get(self.keys.admin_batch(batch_id))
        return Batch.model_validate(json.loads(raw)) if raw else None
