"""Uploads, event status and items: writes go through the queue and answer 202."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint

from ingest.errors import InvalidImage
from ingest.ingestion.enabled_models import ModelNotEnabled, check_models_enabled
from ingest.store.current import enabled_model_ids
from schemas.api.ingest import (
    EventAccepted,
    EventStatusView,
    ItemPoint,
    ItemQuery,
    ItemView,
    ModelsQuery,
    PayloadUpdate,
    RejectedUpload,
    UploadAccepted,
    UploadForm,
)
from schemas.events import DeleteEvent, UpdatePayloadEvent
from schemas.points import MatchCondition, PayloadFilter
from schemas.settings import ApiRole
from search_api.api.common import model_for
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.producer import uploads
from search_api.producer.uploads import RefusedImage, UploadImage, queue_uploads
from search_api.web.errors import ApiError, image_error, invalid_field
from search_api.web.services import current_services

bp = Blueprint("ingest", __name__, url_prefix=API_PREFIX)
TAGS = ("ingest",)
# An item with more images than this is not a catalog item: the page is cut there.
MAX_ITEM_POINTS = 256


def check_image(data: bytes, *, field: str, context: str = "", **details: str) -> None:
    """Refuse a bad image now (422 with the decoder's reason) rather than as a dead letter."""
    try:
        uploads.check_image(data, current_services().settings.images)
    except InvalidImage as error:
        raise image_error(error, context or field, field=field, **details) from error


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


def _check_models(requested: Sequence[str] | None) -> None:
    """Refuse models that are not enabled now (422 listing the enabled ones)."""
    services = current_services()
    enabled = enabled_model_ids(services.settings, services.store) if requested else []
    try:
        check_models_enabled(requested, enabled, services.registry)
    except ModelNotEnabled as refusal:
        raise ApiError(
            422,
            "model_not_enabled",
            str(refusal),
            {"field": "models", "models": refusal.refused, "enabled": refusal.enabled},
        ) from refusal


def _read(file: Any, index: int) -> bytes:
    """The bytes of one file part (an empty one is refused with the others' reasons)."""
    data = file.read()
    if not isinstance(data, bytes):
        raise invalid_field(f"images.{index}", "expected a file part")
    return data


def _rejected(refused: RefusedImage) -> RejectedUpload:
    """A refused image as the API answers it: the reason and a message naming the image."""
    index, item_id = refused.image.index, refused.image.item_id
    error = image_error(refused.error, f"images[{index}] ({item_id})")
    return RejectedUpload(
        index=index,
        item_id=item_id,
        field=f"images.{index}",
        code=error.code,
        reason=refused.error.reason.value,
        message=error.message,
    )


def _nothing_accepted(rejected: Sequence[RejectedUpload]) -> ApiError:
    """Every image refused: the first refusal's error (as for one image), listing them all."""
    first = rejected[0]
    # 413 only when every image is over the size limit, as a single such image always was.
    status = 413 if all(r.reason == "too_many_bytes" for r in rejected) else 422
    message = first.message
    if len(rejected) > 1:
        message = f"none of the {len(rejected)} images was queued: {message} (and others)"
    return ApiError(
        status,
        first.code,
        message,
        {
            "reason": first.reason,
            "field": first.field,
            "item_id": first.item_id,
            "rejected": [r.model_dump() for r in rejected],
        },
    )


@bp.post("/uploads")
@endpoint(ApiRole.INGEST, UploadAccepted, status=202, errors=(413, 415), tags=TAGS)
def upload(form: UploadForm) -> tuple[UploadAccepted, int]:
    """Queue images for embedding: repeat `images`, `item_id` and `metadata` (JSON) in order.

    Each image is answered on its own: the good ones are queued (`events`), the bad ones
    refused with their reason (`rejected`). 202 if any was queued; if none, the error of the
    first with every refusal in `details.rejected`.
    """
    services = current_services()
    _check_counts(form)
    _check_models(form.models)
    metadata = form.metadata or [{} for _ in form.images]
    images = [
        UploadImage(index, item_id, _read(file, index), payload)
        for index, (file, item_id, payload) in enumerate(
            zip(form.images, form.item_id, metadata, strict=True)
        )
    ]
    outcome = queue_uploads(
        images,
        limits=services.settings.images,
        blob_put=services.blobs.put,
        publisher=services.publisher,
        models=form.models,
    )
    rejected = [_rejected(refused) for refused in outcome.refused]
    if not outcome.queued:
        raise _nothing_accepted(rejected)
    return UploadAccepted(events=[q.accepted() for q in outcome.queued], rejected=rejected), 202


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
