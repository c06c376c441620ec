"""Queueing uploaded images, each answered on its own: the path ``POST /api/v1/uploads`` and the
admin page's upload form share.

An image is refused when it is empty or not a whole, sane image (decoded at a draft size,
cheap for JPEG); a refused one leaves no trace (no blob, no event) and does not hold the others
back. The good ones go to the blob store and are published together. How a refusal is worded
is each caller's own (the API's error body, the page's sentence): both get the decoder's error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.errors import InvalidImage, InvalidImageReason
from ingest.images.decode import decode_image, sha256_hex
from schemas.api.ingest import AcceptedUpload
from schemas.events import UploadEvent
from schemas.settings import ImageLimits
from search_api.producer.publisher import Publisher

# Decoding at this size is enough to know the file is a whole, sane image, and cheap for JPEG.
CHECK_DRAFT_SIZE = 224


def check_image(data: bytes, limits: ImageLimits) -> None:
    """Raise ``InvalidImage`` (with the decoder's reason) unless the bytes are a sane image."""
    if not data:
        raise InvalidImage(InvalidImageReason.EMPTY, "the uploaded file is empty")
    decode_image(data, limits, draft_size=CHECK_DRAFT_SIZE)


@dataclass(frozen=True)
class UploadImage:
    """One image of an upload, in request order."""

    index: int
    item_id: str
    data: bytes
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueuedImage:
    """An image stored in the blob store and published as an upload event."""

    image: UploadImage
    event: UploadEvent

    def accepted(self) -> AcceptedUpload:
        """As the API answers it."""
        return AcceptedUpload(
            index=self.image.index,
            event_id=self.event.event_id,
            item_id=self.event.item_id,
            image_uri=self.event.image_uri,
            image_sha256=sha256_hex(self.image.data),
        )


@dataclass(frozen=True)
class RefusedImage:
    """An image that was not queued, and the decoder's reason."""

    image: UploadImage
    error: InvalidImage


@dataclass(frozen=True)
class UploadOutcome:
    """Each image of an upload, queued or refused (both in request order)."""

    queued: list[QueuedImage]
    refused: list[RefusedImage]


def queue_uploads(
    images: Sequence[UploadImage],
    *,
    limits: ImageLimits,
    blob_put: Callable[[bytes], str],
    publisher: Publisher,
    models: list[str] | None = None,
) -> UploadOutcome:
    """Check every image; store and publish the good ones; say why the others were refused."""
    good: list[UploadImage] = []
    refused: list[RefusedImage] = []
    for image in images:
        try:
            check_image(image.data, limits)
        except InvalidImage as error:
            refused.append(RefusedImage(image, error))
        else:
            good.append(image)
    if not good:
        return UploadOutcome([], refused)
    # Only checked images reach the blob store and the queue: a refused one leaves no trace.
    events = [
        UploadEvent(
            item_id=image.item_id,
            image_uri=blob_put(image.data),
            metadata=image.metadata,
            models=models,
        )
        for image in good
    ]
    publisher.publish(events)
    return UploadOutcome(
        [QueuedImage(image, event) for image, event in zip(good, events, strict=True)], refused
    )
