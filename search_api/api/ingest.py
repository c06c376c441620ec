"""Uploads, event status and items: writes go through the queue and answer 202."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint

from ingest.errors import InvalidImage
from ingest.images.decode import decode_image, sha256_hex
from ingest.store.current import enabled_model_ids
from schemas.api.ingest import (
    AcceptedUpload,
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
from schemas.events import DeleteEvent, UpdatePayloadEvent, UploadEvent
from schemas.points import MatchCondition, PayloadFilter
from schemas.settings import ApiRole
from search_api.api.common import model_for, read_upload
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.web.errors import ApiError, image_error, invalid_field, unknown_model
from search_api.web.services import current_services

bp = Blueprint("ingest", __name__, url_prefix=API_PREFIX)
TAGS = ("ingest",)
# Decoding at this size is enough to know the file is a whole, sane image, and cheap for JPEG.
CHECK_DRAFT_SIZE = 224
# An item with more images than this is not a catalog item: the page is cut there.
MAX_ITEM_POINTS = 256


def check_image(data: bytes, *, field: str, context: str = "", **details: str) -> None:
    """Refuse a bad image now (422 with the decoder's reason) rather than as a dead letter."""
    try:
        decode_image(data, current_services().settings.images, draft_size=CHECK_DRAFT_SIZE)
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
    """Refuse models that are not enabled now (422 listing the enabled ones), rather than
    queue events that a worker can only fail as ``model_unavailable``."""
    if not requested:
        return
    services = current_services()
    enabled = enabled_model_ids(services.settings, services.store)
    refused = [model_id for model_id in dict.fromkeys(requested) if model_id not in enabled]
    if not refused:
        return
    named = ", ".join(
        f"{model_id!r}" + (" (no such model)" if unknown_model(model_id) is not None else "")
        for model_id in refused
    )
    raise ApiError(
        422,
        "model_not_enabled",
        f"model {named} {'is' if len(refused) == 1 else 'are'} not enabled; enabled: "
        f"{', '.join(enabled)} (LOOKALIKE_ENABLED_MODELS, else the current model)",
        {"field": "models", "models": refused, "enabled": enabled},
    )


def _refusal(file: Any, index: int, item_id: str) -> bytes | RejectedUpload:
    """The image's bytes, or why it is refused (an empty file or not a sane image)."""
    try:
        data = read_upload(file, f"images.{index}")
        check_image(
            data, field=f"images.{index}", context=f"images[{index}] ({item_id})", item_id=item_id
        )
    except ApiError as error:
        if error.code != "invalid_image":
            raise  # the request itself is malformed, not this image
        return RejectedUpload(
            index=index,
            item_id=item_id,
            field=f"images.{index}",
            code=error.code,
            reason=str(error.details.get("reason", "")),
            message=error.message,
        )
    return data


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
    good: list[tuple[int, str, dict[str, Any], bytes]] = []
    rejected: list[RejectedUpload] = []
    for index, (file, item_id, payload) in enumerate(
        zip(form.images, form.item_id, metadata, strict=True)
    ):
        checked = _refusal(file, index, item_id)
        if isinstance(checked, RejectedUpload):
            rejected.append(checked)
        else:
            good.append((index, item_id, payload, checked))
    if not good:
        raise _nothing_accepted(rejected)
    # Only checked images reach the blob store and the queue: a refused one leaves no trace.
    events = [
        UploadEvent(
            item_id=item_id,
            image_uri=services.blobs.put(data),
            metadata=payload,
            models=form.models,
        )
        for _, item_id, payload, data in good
    ]
    services.publisher.publish(events)
    accepted = [
        AcceptedUpload(
            index=index,
            event_id=event.event_id,
            item_id=event.item_id,
            image_uri=event.image_uri,
            image_sha256=sha256_hex(data),
        )
        for event, (index, _, _, data) in zip(events, good, strict=True)
    ]
    return UploadAccepted(events=accepted, rejected=rejected), 202


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
