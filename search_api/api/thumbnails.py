"""Thumbnails made at ingest time, by the key in a point's ``thumbnail_key`` payload field."""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response, request

from ingest.images.thumbnails import THUMBNAIL_KEY_PATTERN, THUMBNAIL_MEDIA_TYPE, is_thumbnail_key
from schemas.settings import ApiRole
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.web.errors import ApiError
from search_api.web.services import current_services

bp = Blueprint("thumbnails", __name__, url_prefix=API_PREFIX)
# A key is the sha256 of the bytes, so what it names never changes: cache it for a year. Private
# because the request carries an API key: a shared cache must not hand it to anyone else.
CACHE_SECONDS: Final = 365 * 24 * 3600


@bp.get("/thumbnails/<key>")
@endpoint(
    ApiRole.SEARCH,
    None,
    errors=(404,),
    tags=("search",),
    media_type=THUMBNAIL_MEDIA_TYPE,
    path_patterns={"key": THUMBNAIL_KEY_PATTERN},
)
def thumbnail(key: str) -> Response:
    """A result's thumbnail (WebP, longest side 256 px by default) by its `thumbnail_key`."""
    if not is_thumbnail_key(key):
        # 404, not 422: a malformed key names no thumbnail, like a key nothing was stored under.
        raise ApiError(404, "thumbnail_not_found", "not a thumbnail key (64 lower-case hex digits)")
    data = current_services().thumbnails.get(key)
    if data is None:
        raise ApiError(404, "thumbnail_not_found", f"no thumbnail {key}")
    response = Response(data, mimetype=THUMBNAIL_MEDIA_TYPE)
    response.cache_control.private = True
    response.cache_control.max_age = CACHE_SECONDS
    response.cache_control.immutable = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(key)
    # In place: a matching If-None-Match becomes a 304 without a body.
    response.make_conditional(request)
    return response
