"""Helpers shared by the API views: model choice, limits, uploaded files, query embedding."""

from __future__ import annotations

from typing import Any

from ingest.errors import InvalidImage, InvalidImageReason
from ingest.store.current import current_model_id
from search_api.queries.similar import embed_query_image
from search_api.web.errors import ApiError, image_error, invalid_field
from search_api.web.metrics import current_metrics
from search_api.web.services import Services, current_services


def model_for(requested: str | None) -> str:
    """The requested model id, or the current one."""
    if requested:
        model_id = requested
    else:
        services = current_services()
        model_id = current_model_id(services.settings, services.store)
    return model_id


def check_limit(limit: int, field: str = "limit") -> int:
    """Refuse a page size above the configured maximum (422 naming the field)."""
    maximum = current_services().settings.api.max_limit
    if limit > maximum:
        raise invalid_field(field, f"at most {maximum} (LOOKALIKE_API__MAX_LIMIT)")
    return limit


def read_upload(file: Any, field: str) -> bytes:
    """The bytes of an uploaded file part; empty is an invalid image, not a server error."""
    data = file.read()
    if not isinstance(data, bytes):
        raise invalid_field(field, "expected a file part")
    if not data:
        raise ApiError(
            422,
            "invalid_image",
            f"{field}: the uploaded file is empty",
            {"reason": InvalidImageReason.EMPTY.value, "field": field},
        )
    return data


def embed_image(services: Services, model_id: str, image: bytes, field: str) -> list[float]:
    """Decode and embed a query image with the model, timed for /metrics."""
    try:
        with current_metrics().time_embedding(model_id):
            return embed_query_image(services.settings, model_id, image)
    except InvalidImage as error:
        raise image_error(error, field=field) from error
