"""Every failure answers with the one error body, and with the documented status code."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from qdrant_client import QdrantClient

from ingest.store.qdrant import QdrantStore
from schemas.settings import ApiSettings, Settings
from search_api.web.services import Services
from tests.search_api.conftest import (
    Catalog,
    admin_client,
    closing_app,
    error_of,
    free_port,
    jpeg,
)
from tests.support import TEST_MODEL_ID

# --- 422: validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "item_id"),
        ({"item_id": "sku-01", "limit": 0}, "limit"),
        ({"item_id": "sku-01", "limit": "many"}, "limit"),
        ({"item_id": "sku-01", "score_threshold": 2}, "score_threshold"),
        ({"item_id": "sku-01", "model_id": "Not A Model!"}, "model_id"),
        ({"item_id": "sku-01", "filter": {"must": [{"kind": "match", "key": "brand"}]}}, None),
    ],
    ids=["missing", "zero-limit", "not-a-number", "threshold", "model-id", "filter"],
)
def test_validation_errors_name_the_field(
    client: FlaskClient, catalog: Catalog, body: dict[str, Any], field: str | None
) -> None:
    error = error_of(client.post("/api/v1/similar/item", json=body), 422, "validation_error")

    if field is None:  # nested: the path into the filter
        assert error["details"]["field"].startswith("filter.must.0")
    else:
        assert error["details"]["field"] == field
    assert error["details"]["errors"][0]["message"]


def test_limit_above_the_configured_maximum_is_a_422(
    api_settings: Settings, store: QdrantStore, catalog: Catalog
) -> None:
    settings = api_settings.model_copy(
        update={"api": api_settings.api.model_copy(update={"max_limit": 5})}
    )
    with closing_app(Services(settings, store=store)) as app:
        response = admin_client(app).post(
            "/api/v1/similar/item", json={"item_id": "sku-01", "limit": 6}
        )

    error = error_of(response, 422, "validation_error")
    assert error["details"]["field"] == "limit"
    assert "LOOKALIKE_API__MAX_LIMIT" in error["message"]


def test_zero_vector_and_wrong_dimension_are_422(client: FlaskClient, catalog: Catalog) -> None:
    zero = client.post("/api/v1/similar/vector", json={"vector": [0.0] * 96})
    short = client.post("/api/v1/similar/vector", json={"vector": [0.1] * 5})

    assert error_of(zero, 422, "validation_error")["details"]["field"] == "vector"
    assert "dimensions" in error_of(short, 422, "collection_mismatch")["message"]


def test_malformed_json_is_a_422_and_other_media_types_a_415(
    client: FlaskClient, catalog: Catalog
) -> None:
    broken = client.post("/api/v1/similar/item", data="{not json", content_type="application/json")
    as_form = client.post("/api/v1/similar/item", data={"item_id": "sku-01"})
    json_to_multipart = client.post("/api/v1/similar/image", json={"image": "x"})

    assert error_of(broken, 422, "invalid_json")["details"]["field"] == "body"
    error_of(as_form, 415, "unsupported_media_type")
    error_of(json_to_multipart, 415, "unsupported_media_type")


# --- 422: not an image ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello, I am text", "not_an_image"),
        (jpeg(1)[:300], "truncated"),
        (b"", "empty"),
    ],
    ids=["text", "truncated", "empty"],
)
def test_bad_query_image_is_a_422_with_the_decoders_reason(
    client: FlaskClient, catalog: Catalog, data: bytes, reason: str
) -> None:
    response = client.post("/api/v1/similar/image", data={"image": (io.BytesIO(data), "q.jpg")})

    error = error_of(response, 422, "invalid_image")
    assert error["details"]["reason"] == reason
    assert error["details"]["field"] == "image"


def test_image_field_sent_as_text_is_a_422(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post("/api/v1/similar/image", data={"image": "not a file part"})

    assert error_of(response, 422, "validation_error")["details"]["field"] == "image"


# --- 404 ------------------------------------------------------------------------------------


def test_unknown_item_is_404(client: FlaskClient, catalog: Catalog) -> None:
    error_of(client.post("/api/v1/similar/item", json={"item_id": "nope"}), 404, "item_not_found")
    error_of(client.get("/api/v1/items/nope"), 404, "item_not_found")
    error_of(client.post("/api/v1/recommend", json={"positive": ["nope"]}), 404, "item_not_found")


def test_unknown_model_is_404(client: FlaskClient, catalog: Catalog) -> None:
    by_image = client.post(
        "/api/v1/similar/image",
        data={"image": (io.BytesIO(jpeg(2)), "q.jpg"), "model_id": "no-such-model"},
    )
    by_item = client.post(
        "/api/v1/similar/item", json={"item_id": "sku-01", "model_id": "no-such-model"}
    )

    error_of(by_image, 404, "model_not_found")
    error_of(by_item, 404, "model_not_found")


def test_known_model_without_a_collection_is_404(client: FlaskClient, catalog: Catalog) -> None:
    # A registry model, not installed here and never ingested: its collection is what's missing.
    response = client.post("/api/v1/facets", json={"key": "brand", "model_id": "dinov2-vits14"})

    assert "dinov2-vits14" in error_of(response, 404, "collection_not_found")["message"]


def test_unknown_route_and_method_use_the_error_body(client: FlaskClient) -> None:
    error_of(client.get("/api/v1/nothing-here"), 404, "not_found")
    response = client.put("/api/v1/similar/item")

    error_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


# --- 413 ------------------------------------------------------------------------------------


@pytest.fixture
def small_limits_app(api_settings: Settings, store: QdrantStore) -> Iterator[Flask]:
    """An app accepting 20 kB bodies and two images per request."""
    api = ApiSettings(keys=api_settings.api.keys, max_upload_bytes=20_000, max_images_per_request=2)
    with closing_app(Services(api_settings.model_copy(update={"api": api}), store=store)) as app:
        yield app


def test_body_over_the_size_limit_is_a_413(small_limits_app: Flask) -> None:
    big = jpeg(3, size=(400, 400)) + b"\0" * 20_000
    response = admin_client(small_limits_app).post(
        "/api/v1/uploads", data={"images": (io.BytesIO(big), "big.jpg"), "item_id": "big"}
    )

    error_of(response, 413, "payload_too_large")


def test_too_many_images_is_a_413(small_limits_app: Flask) -> None:
    images = [(io.BytesIO(jpeg(i)), f"{i}.jpg") for i in range(3)]
    response = admin_client(small_limits_app).post(
        "/api/v1/uploads", data={"images": images, "item_id": ["a", "b", "c"]}
    )

    error = error_of(response, 413, "too_many_images")
    assert error["details"] == {"field": "images", "max": 2}


def test_image_over_the_per_image_limit_is_a_413(
    api_settings: Settings, store: QdrantStore
) -> None:
    images = api_settings.images.model_copy(update={"max_bytes": 1000})
    settings = api_settings.model_copy(update={"images": images})
    with closing_app(Services(settings, store=store)) as app:
        client = admin_client(app)
        query = client.post("/api/v1/similar/image", data={"image": (io.BytesIO(jpeg(5)), "q")})
        upload = client.post(
            "/api/v1/uploads", data={"images": (io.BytesIO(jpeg(5)), "a"), "item_id": "big"}
        )

    for response, field in ((query, "image"), (upload, "images.0")):
        error = error_of(response, 413, "invalid_image")
        assert error["details"]["reason"] == "too_many_bytes"
        assert error["details"]["field"] == field


# --- 503 ------------------------------------------------------------------------------------


def test_store_down_is_a_503(api_settings: Settings) -> None:
    dead = QdrantStore(
        QdrantClient(url=f"http://127.0.0.1:{free_port()}", timeout=2, check_compatibility=False)
    )
    with closing_app(Services(api_settings, store=dead)) as app:
        client = admin_client(app)
        by_item = client.post("/api/v1/similar/item", json={"item_id": "sku-01"})
        collections = client.get("/api/v1/collections")
    dead.close()

    assert "unavailable" in error_of(by_item, 503, "store_unavailable")["message"]
    error_of(collections, 503, "store_unavailable")


def test_redis_down_is_a_503(api_settings: Settings, store: QdrantStore) -> None:
    settings = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with closing_app(Services(settings, store=store)) as app:
        client = admin_client(app)
        uploaded = client.post(
            "/api/v1/uploads", data={"images": (io.BytesIO(jpeg(4)), "a.jpg"), "item_id": "x"}
        )
        status = client.get("/api/v1/events/some-event")
        deleted = client.delete("/api/v1/items/sku-01")
        letters = client.get("/api/v1/deadletters")

    for response in (uploaded, status, deleted, letters):
        error_of(response, 503, "queue_unavailable")


def test_an_app_without_a_redis_url_never_starts_a_broker(
    api_settings: Settings, store: QdrantStore
) -> None:
    # `lookalike up` and `lookalike api` start the embedded Redis and pass its URL; an app
    # created without one answers queue requests with a 503 instead of starting a server.
    settings = api_settings.model_copy(update={"redis_url": None})
    with closing_app(Services(settings, store=store)) as app:
        client = admin_client(app)
        uploaded = client.post(
            "/api/v1/uploads", data={"images": (io.BytesIO(jpeg(4)), "a.jpg"), "item_id": "x"}
        )
        letters = client.get("/api/v1/deadletters")
        searched = client.post("/api/v1/similar/item", json={"item_id": "sku-01"})

    for response in (uploaded, letters):
        error = error_of(response, 503, "queue_unavailable")
        assert "LOOKALIKE_REDIS_URL" in error["message"]
    assert searched.status_code != 503  # searching needs no queue
    assert not (settings.data_dir / "redis").exists()


# --- 500: a bug still answers with the error body ------------------------------------------


class BrokenStore(QdrantStore):
    """A store with a bug: not a StoreError, just an exception."""

    def collections(self) -> Any:
        raise RuntimeError("bug")


def test_unexpected_exception_is_a_500_with_the_error_body(api_settings: Settings) -> None:
    broken = BrokenStore(QdrantClient(location=":memory:"))
    with closing_app(Services(api_settings, store=broken)) as app:
        response = admin_client(app).get("/api/v1/collections")
    broken.close()

    error = error_of(response, 500, "internal_error")
    assert "bug" not in error["message"]  # internals stay in the server log


def test_default_model_is_used_when_none_is_given(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post("/api/v1/similar/item", json={"item_id": "sku-01", "limit": 1})

    assert response.get_json()["model_id"] == TEST_MODEL_ID
