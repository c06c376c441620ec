"""Uploads, the events they queue, stored items and their payloads, and dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, Json

from schemas.api.common import FormBody, ItemId, Metadata, Repeated, UploadedFile
from schemas.events import EventStatus
from schemas.models import ModelId


class UploadForm(FormBody):
    """Images and their items: repeat ``images``, ``item_id`` (and ``metadata``) in one order."""

    images: Repeated[UploadedFile] = Field(min_length=1, description="The image files.")
    item_id: Repeated[ItemId] = Field(min_length=1, description="Item of each image, in order.")
    metadata: Repeated[Json[Metadata]] | None = Field(
        default=None,
        description="JSON object per image, in order: becomes the payload (e.g. brand, price).",
        examples=[['{"brand": "acme", "price": 12.5}']],
    )
    models: Repeated[ModelId] | None = Field(
        default=None, description="Models to embed with; default: every enabled model."
    )


class AcceptedUpload(BaseModel):
    """An image stored in the blob store and queued for embedding."""

    index: int = Field(description="Position of the image in the request, from 0.")
    event_id: str
    item_id: str
    image_uri: str
    image_sha256: str


class RejectedUpload(BaseModel):
    """An image of the request that was refused: nothing of it was stored or queued."""

    index: int = Field(description="Position of the image in the request, from 0.")
    item_id: str
    field: str = Field(description="The form field, e.g. `images.1`.", examples=["images.1"])
    code: str = Field(description="The error code, as in error bodies: `invalid_image`.")
    reason: str = Field(
        description="Why, as in error details and dead letters: `not_an_image`, `empty`, "
        "`truncated`, `too_many_bytes`, `decompression_bomb`, `bad_aspect_ratio` ...",
        examples=["not_an_image"],
    )
    message: str


class UploadAccepted(BaseModel):
    """Each image answered on its own: the queued ones and the refused ones, in request order."""

    events: list[AcceptedUpload] = Field(description="The images queued, with their event ids.")
    rejected: list[RejectedUpload] = Field(
        default_factory=list, description="The images refused, with their reasons."
    )


class EventAccepted(BaseModel):
    """A queued delete or payload update."""

    event_id: str
    item_id: str


class EventStatusView(BaseModel):
    """Where an event is: queued, done, or failed with its reason."""

    event_id: str
    item_id: str | None = None
    status: EventStatus
    reason: str | None = None
    message: str | None = None
    updated_at: datetime


class ItemQuery(BaseModel):
    """Which collection(s) to read an item from."""

    model_id: ModelId | None = Field(default=None, description="Default: every collection.")
    with_vectors: bool = False


class ItemPoint(BaseModel):
    """One stored image of an item in one model's collection."""

    model_id: str
    point_id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


class ItemView(BaseModel):
    """Every stored image of an item, per model."""

    item_id: str
    points: list[ItemPoint]


class ModelsQuery(BaseModel):
    """Restrict a delete to one model's collection."""

    model_id: ModelId | None = Field(default=None, description="Default: every collection.")


class PayloadUpdate(BaseModel):
    """Metadata merged into every point of the item (system keys are kept)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"metadata": {"price": 9.5}}]})

    metadata: Metadata = Field(min_length=1)
    models: list[ModelId] | None = Field(default=None, description="Default: every collection.")


class DeadLetterView(BaseModel):
    """An event that could not succeed as it was, with its reason."""

    event_id: str
    task: str
    reason: str
    message: str
    failed_at: datetime
    event: dict[str, Any]


class DeadLetterList(BaseModel):
    """Dead letters, oldest first."""

    count: int
    dead_letters: list[DeadLetterView]


class RetriedEvents(BaseModel):
    """Dead letters put back on the queue."""

    retried: list[str]


class BlobForm(FormBody):
    """One image file to keep in the blob store."""

    file: UploadedFile = Field(description="The image file.")


class StoredBlob(BaseModel):
    """Where an image now lives: the URI an upload event names it by."""

    uri: str = Field(description="blob://<sha256>, for an event's image_uri.")
    sha256: str
    bytes: int
