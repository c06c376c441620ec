"""`POST /api/v1/blobs`: an image into the blob store over HTTP, its URI back, nothing queued."""

from __future__ import annotations

import hashlib
import io

from flask.testing import FlaskClient

from schemas.queue import QUEUE
from search_api.web.services import Services
from tests.search_api.conftest import error_of, jpeg


def test_a_stored_blob_is_where_its_uri_says_and_nothing_is_queued(
    client: FlaskClient, services: Services
) -> None:
    data = jpeg(21)
    response = client.post("/api/v1/blobs", data={"file": (io.BytesIO(data), "p.jpg")})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    digest = hashlib.sha256(data).hexdigest()
    assert body == {"uri": f"blob://{digest}", "sha256": digest, "bytes": len(data)}
    assert services.blobs.get(body["uri"], services.settings.images) == data
    assert services.publisher.tracker.client.llen(QUEUE) == 0


def test_a_file_that_is_not_an_image_is_refused_and_not_stored(
    client: FlaskClient, services: Services
) -> None:
    data = b"just some text, not a picture"
    response = client.post("/api/v1/blobs", data={"file": (io.BytesIO(data), "notes.jpg")})
    error = error_of(response, 422, "invalid_image")
    assert error["details"] == {"reason": "not_an_image", "field": "file"}
    digest = hashlib.sha256(data).hexdigest()
    assert not services.blobs.path_for(f"blob://{digest}").exists()


def test_a_request_without_a_file_part_is_a_clear_4xx(client: FlaskClient) -> None:
    no_file = client.post("/api/v1/blobs", data={"note": "x"}, content_type="multipart/form-data")
    assert error_of(no_file, 422, "validation_error")["details"]["field"] == "file"
    not_multipart = client.post("/api/v1/blobs", json={"file": "x"})
    error_of(not_multipart, 415, "unsupported_media_type")
