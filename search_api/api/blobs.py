"""`POST /api/v1/blobs`: put an image in the blob store, for producers that publish events.

A producer that sends its own upload events (see the README's message format) names images
by ``blob://<sha256>``; this is how it gets them there over HTTP, checked as uploads are.
"""

from __future__ import annotations

from flask import Blueprint

from ingest.images.decode import sha256_hex
from schemas.api.ingest import BlobForm, StoredBlob
from schemas.settings import ApiRole
from search_api.api.common import read_upload
from search_api.api.ingest import check_image
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.web.services import current_services

bp = Blueprint("blobs", __name__, url_prefix=API_PREFIX)


@bp.post("/blobs")
@endpoint(ApiRole.INGEST, StoredBlob, status=201, errors=(413, 415), tags=("ingest",))
def put_blob(form: BlobForm) -> tuple[StoredBlob, int]:
    """Store an image (checked as an upload is) and answer its `blob://` URI; queues nothing."""
    data = read_upload(form.file, "file")
    check_image(data, field="file")
    uri = current_services().blobs.put(data)
    return StoredBlob(uri=uri, sha256=sha256_hex(data), bytes=len(data)), 201
