"""Pictures on the admin page: stored thumbnails, uploaded query images, queued uploads.

Browsers cannot send an API key with ``<img>``, so the page serves what it shows under /admin
(behind the session). Everything here is content-addressed, so it is cached for good.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

from flask import Response, abort

from ingest.errors import InvalidImage
from ingest.images.blobs import BlobStore
from ingest.images.decode import decode_image
from ingest.images.thumbnails import THUMBNAIL_MEDIA_TYPE, is_thumbnail_key, make_thumbnail
from search_api.admin.blueprint import bp, services
from search_api.queries.similar import embed_query_image

log = logging.getLogger(__name__)

PREVIEW_SIZE = 256
# Query images are kept a day: long enough to page through results, then pruned.
QUERY_IMAGE_TTL = 24 * 3600
_DIGEST = re.compile(r"[0-9a-f]{64}")
_IMMUTABLE = "private, max-age=31536000, immutable"
_VECTOR_CACHE_SIZE = 64


def _image_response(data: bytes) -> Response:
    response = Response(data, mimetype=THUMBNAIL_MEDIA_TYPE)
    response.headers["Cache-Control"] = _IMMUTABLE
    return response


def preview(data: bytes) -> bytes:
    """A WebP preview of image bytes (``InvalidImage`` if they are not a picture)."""
    image = decode_image(data, services().settings.images, draft_size=PREVIEW_SIZE)
    return make_thumbnail(image, size=PREVIEW_SIZE)


@bp.get("/thumbnails/<key>")
def thumbnail(key: str) -> Response:
    """An ingest-time thumbnail (WebP) by its key."""
    if not is_thumbnail_key(key):
        abort(404)
    data = services().thumbnails.get(key)
    if data is None:
        abort(404, f"no thumbnail {key}")
    return _image_response(data)


@bp.get("/blobs/<digest>")
def blob_preview(digest: str) -> Response:
    """A preview of an uploaded image waiting in (or ingested from) the blob store."""
    if not _DIGEST.fullmatch(digest):
        abort(404)
    settings = services().settings
    try:
        data = services().blobs.get(f"blob://{digest}", settings.images)
        return _image_response(preview(data))
    except InvalidImage:
        abort(404, f"no image blob://{digest}")


class QueryImages:
    """Images uploaded to search with, kept for a day so result pages can be paged."""

    def __init__(self, root: Path) -> None:
        self.blobs = BlobStore(root)
        self.root = root
        self._last_prune = 0.0

    def put(self, data: bytes) -> str:
        """Keep the image; returns its sha256."""
        self._prune()
        return self.blobs.put(data).removeprefix("blob://")

    def get(self, digest: str) -> bytes | None:
        """The image, or None if it expired (or never was)."""
        if not _DIGEST.fullmatch(digest):
            return None
        try:
            return self.blobs.get(f"blob://{digest}", services().settings.images)
        except InvalidImage:
            return None

    def _prune(self) -> None:
        now = time.time()
        if now - self._last_prune < 600 or not self.root.is_dir():
            return
        self._last_prune = now
        for path in self.root.rglob("*"):
            try:
                if path.is_file() and now - path.stat().st_mtime > QUERY_IMAGE_TTL:
                    path.unlink()
            except OSError as error:  # another process pruned it first
                log.debug("query image %s not pruned: %s", path, error)


_query_stores: dict[Path, QueryImages] = {}
_vectors: OrderedDict[tuple[str, str, str], list[float]] = OrderedDict()
_lock = threading.Lock()


def query_images() -> QueryImages:
    """The query image store of this deployment (under the data dir)."""
    root = services().settings.data_dir / "admin" / "queries"
    with _lock:
        if root not in _query_stores:
            _query_stores[root] = QueryImages(root)
        return _query_stores[root]


def query_vector(model_id: str, digest: str, data: bytes) -> list[float]:
    """The embedding of a query image, cached: paging through results embeds it once."""
    fingerprint = services().registry.manifest(model_id).fingerprint
    cache_key = (fingerprint, digest, str(services().settings.data_dir))
    with _lock:
        if cache_key in _vectors:
            _vectors.move_to_end(cache_key)
            return _vectors[cache_key]
    vector = embed_query_image(services().settings, model_id, data)
    with _lock:
        _vectors[cache_key] = vector
        while len(_vectors) > _VECTOR_CACHE_SIZE:
            _vectors.popitem(last=False)
    return vector


@bp.get("/queries/<digest>")
def query_preview(digest: str) -> Response:
    """A preview of an uploaded query image."""
    data = query_images().get(digest)
    if data is None:
        abort(404, "this query image has expired: upload it again")
    return _image_response(preview(data))
