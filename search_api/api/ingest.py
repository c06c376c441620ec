"""Uploads, event status and items: writes go through the queue and answer 202."""

from __future__ import annotations

from flask import Blueprint

from ingest.errors import InvalidImage
from ingest.images.decode import decode_image, sha256_hex
from schemas.api.ingest import (
    AcceptedUpload,
    EventAccepted,
    EventStatusView,
    ItemPoint,
    ItemQuery,
    ItemView,
    ModelsQuery,
    PayloadUpdate,
    UploadAccepted,
    UploadForm,
)
from schemas.events import DeleteEvent, UpdatePayloadEvent, UploadEvent
from schemas.points import MatchCondition, PayloadFilter
from schemas.settings import ApiRole
from search_api.api.common import model_for, read_upload
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.web.errors import ApiError, image_error, invalid_field
from search_api.web.services import current_services

bp = Blueprint("ingest", __name__, url_prefix=API_PREFIX)
TAGS = ("ingest",)
# Decoding at this size is enough to know the file is a whole, sane image, and cheap for JPEG.
CHECK_DRAFT_SIZE = 224
# An item with more images than this is not a catalog item: the page is cut there.
MAX_ITEM_POINTS = 256


def _check_image(data: bytes, index: int, item_id: str) -> None:
    """Refuse a bad image now (422 with the decoder's reason) rather than as a dead letter."""
    try:
        decode_image(data, current_services().settings.images, draft_size=CHECK_DRAFT_SIZE)
    except InvalidImage as error:
        raise image_error(
            error, f"images[{index}] ({item_id})", field=f"images.{index}", item_id=item_id
        ) from error


def _check_counts(form: UploadForm) -> None:
    """Too many images is a 413; item ids and metadata must pair up with the images."""
    maximum = current_services().settings.api.max_images_per_request
    if len(form.images) > maximum:
        raise ApiError(
            413,
            "too_many_images",
            f"{len(form.images)} images in one request; at most {maximum} "
            "(LOOKALIKE_API__MAX_IMAGES_PER_REQUEST)",
            {"field": "images", "max": maximum},
        )
    for field, values in (("item_id", form.item_id), ("metadata", form.metadata)):
        if values is not None and len(values) != len(form.images):
            raise invalid_field(
                field, f"{len(values)} {field} fields for {len(form.images)} images: one each"
            )


@bp.post("/uploads")
@endpoint(ApiRole.INGEST, UploadAccepted, status=202, errors=(413, 415), tags=TAGS)
def upload(form: UploadForm) -> tuple[UploadAccepted, int]:
    """Queue images for embedding: repeat `images`, `item_id` and `metadata` (JSON) in order."""
    services = current_services()
    _check_counts(form)
    metadata = form.metadata or [{} for _ in form.images]
    images = [read_upload(file, f"images.{i}") for i, file in enumerate(form.images)]
    for index, (data, item_id) in enumerate(zip(images, form.item_id, strict=True)):
        _check_image(data, index, item_id)
    # All checked before anything is stored or queued: a request is accepted whole or not at all.
    events = [
        UploadEvent(
            item_id=item_id,
            image_uri=services.blobs.put(data),
            metadata=payload,
            models=form.models,
        )
        for data, item_id, payload in zip(images, form.item_id, metadata, strict=True)
    ]
    services.publisher.publish(events)
    accepted = [
        AcceptedUpload(
            event_id=event.event_id,
            item_id=event.item_id,
            image_uri=event.image_uri,
            image_sha256=sha256_hex(data),
        )
        for event, data in zip(events, images, strict=True)
    ]
    return UploadAccepted(events=accepted), 202


@bp.get("/events/<event_id>")
@endpoint(ApiRole.INGEST, EventStatusView, errors=(404,), tags=TAGS)
def event_status(event_id: str) -> EventStatusView:
    """Status of a queued event: queued, done, or failed with its reason."""
    state = current_services().tracker.status(event_id)
    if state is None:
        raise ApiError(
            404, "event_not_found", f"no event {event_id!r} (never queued, or older than 7 days)"
        )
    return EventStatusView.model_validate(state.model_dump())


@bp.get("/items/<path:item_id>")
@endpoint(ApiRole.SEARCH, ItemView, errors=(404,), tags=TAGS)
def get_item(item_id: str, query: ItemQuery) -> ItemView:
    """Every stored image of an item (points and payload), per model."""
    store = current_services().store
    if query.model_id is not None:
        model_ids = [model_for(query.model_id)]
    else:
        model_ids = [info.model_id for info in store.collections()]
    only_item = PayloadFilter(must=[MatchCondition(key="item_id", value=item_id)])
    points: list[ItemPoint] = []
    for model_id in model_ids:
        found, _ = store.scroll(
            model_id, filter=only_item, limit=MAX_ITEM_POINTS, with_vectors=query.with_vectors
        )
        points += [
            ItemPoint(model_id=model_id, point_id=p.id, payload=p.payload, vector=p.vector)
            for p in found
        ]
    if not points:
        raise ApiError(404, "item_not_found", f"no item {item_id!r} in {', '.join(model_ids)}")
    return ItemView(item_id=item_id, points=points)


def _check_item_id(item_id: str) -> None:
    if len(item_id) > 500:
        raise invalid_field("item_id", "at most 500 characters")


@bp.delete("/items/<path:item_id>")
@endpoint(ApiRole.INGEST, EventAccepted, status=202, errors=(404,), tags=TAGS)
def delete_item(item_id: str, query: ModelsQuery) -> tuple[EventAccepted, int]:
    """Queue the removal of every image of an item (all collections, or one model's)."""
    _check_item_id(item_id)
    models = [query.model_id] if query.model_id else None
    event = DeleteEvent(item_id=item_id, models=models)
    current_services().publisher.publish([event])
    return EventAccepted(event_id=event.event_id, item_id=item_id), 202


@bp.patch("/items/<path:item_id>")
@endpoint(ApiRole.INGEST, EventAccepted, status=202, errors=(404, 415), tags=TAGS)
def update_item(item_id: str, json: PayloadUpdate) -> tuple[EventAccepted, int]:
    """Queue a metadata merge into every image of an item, without re-embedding."""
    _check_item_id(item_id)
    event = UpdatePayloadEvent(item_id=item_id, metadata=json.metadata, models=json.models)
    current_services().publisher.publish([event])
    return EventAccepted(event_id=event.event_id, item_id=item_id), 202
