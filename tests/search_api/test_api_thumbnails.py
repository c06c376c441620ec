"""Thumbnails over HTTP: the key a result's payload carries fetches a cacheable WebP."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from ingest.ingestion.bulk import BulkIngestor, catalog_sources
from ingest.models.runtime import load_runtime
from ingest.store.qdrant import QdrantStore
from schemas.settings import ApiRole, Settings
from search_api.web.services import Services
from tests.ingest.catalog_samples import CATALOG_SIZE, write_catalog
from tests.search_api.conftest import auth, error_of

YEAR = 365 * 24 * 3600


@pytest.fixture
def thumbnailed(
    api_settings: Settings, store: QdrantStore, services: Services, tmp_path: Path
) -> None:
    """The test catalog ingested with thumbnails, into the store the app serves from."""
    csv_path, images = write_catalog(tmp_path / "catalog")
    runtime = load_runtime(api_settings, api_settings.default_model)
    ingestor = BulkIngestor(
        store,
        [runtime],
        api_settings.images,
        thumbnails=services.thumbnails,
        thumbnail_size=api_settings.thumbnail_size,
    )
    summary = ingestor.run(catalog_sources(csv_path, images), progress=False)
    assert (summary.ingested, summary.failed) == (CATALOG_SIZE, 0)


def result_thumbnail_keys(client: FlaskClient) -> list[str]:
    """The thumbnail keys of the results of a query, as a result grid reads them."""
    response = client.post("/api/v1/similar/item", json={"item_id": "sku-00", "limit": 100})
    assert response.status_code == 200, response.get_json()
    keys = [hit["payload"]["thumbnail_key"] for hit in response.get_json()["hits"]]
    assert len(keys) == CATALOG_SIZE - 1
    return keys


@pytest.mark.usefixtures("thumbnailed")
def test_result_thumbnails_are_served_as_webp_cacheable_for_good(app: Flask) -> None:
    searcher = app.test_client()
    searcher.environ_base["HTTP_AUTHORIZATION"] = auth(ApiRole.SEARCH)["Authorization"]

    for key in result_thumbnail_keys(searcher):
        response = searcher.get(f"/api/v1/thumbnails/{key}")

        assert response.status_code == 200
        assert response.mimetype == "image/webp"
        data = response.get_data()
        assert hashlib.sha256(data).hexdigest() == key
        image = Image.open(io.BytesIO(data))
        assert image.format == "WEBP"
        assert max(image.size) <= 256
        cache = response.cache_control
        assert cache.max_age == YEAR
        assert cache.immutable
        assert cache.private  # sent with an API key: no shared cache may keep it
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.get_etag() == (key, False)


@pytest.mark.usefixtures("thumbnailed")
def test_a_cached_thumbnail_is_revalidated_without_a_body(client: FlaskClient) -> None:
    key = result_thumbnail_keys(client)[0]

    response = client.get(f"/api/v1/thumbnails/{key}", headers={"If-None-Match": f'"{key}"'})

    assert response.status_code == 304
    assert response.get_data() == b""


def test_unknown_thumbnail_is_404(client: FlaskClient) -> None:
    response = client.get(f"/api/v1/thumbnails/{'ab' * 32}")
    error = error_of(response, 404, "thumbnail_not_found")
    assert "ab" * 32 in error["message"]


@pytest.mark.parametrize(
    "key",
    [
        "AB" * 32,  # upper case
        "ab" * 31,  # too short
        "ab" * 33,  # too long
        "zz" * 32,  # not hex
        "..",
        "..%2F..%2Fsettings.json",
        f"{'ab' * 32}.webp",
        "%00",
    ],
)
def test_malformed_thumbnail_key_is_404_with_the_error_body(client: FlaskClient, key: str) -> None:
    response = client.get(f"/api/v1/thumbnails/{key}")
    assert response.status_code == 404
    body = response.get_json()
    # Ours, or Flask's "no such route" when a decoded "/" leaves the route: one body shape.
    assert body["error"]["code"] in {"thumbnail_not_found", "not_found"}
    assert set(body["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("key", ["../../../etc/passwd", "ab/cd/" + "ab" * 32])
def test_paths_never_reach_the_store(client: FlaskClient, key: str) -> None:
    error_of(client.get(f"/api/v1/thumbnails/{key}"), 404, "not_found")


@pytest.mark.usefixtures("thumbnailed")
def test_thumbnails_need_a_key_with_the_search_role(app: Flask, client: FlaskClient) -> None:
    key = result_thumbnail_keys(client)[0]
    anonymous = app.test_client()
    error_of(anonymous.get(f"/api/v1/thumbnails/{key}"), 401, "unauthorized")
    ingest_only = anonymous.get(f"/api/v1/thumbnails/{key}", headers=auth(ApiRole.INGEST))
    error_of(ingest_only, 403, "forbidden")
    # Even a malformed key is refused before it is looked at.
    error_of(anonymous.get("/api/v1/thumbnails/nope"), 401, "unauthorized")


def test_openapi_documents_a_webp_body_and_the_key_format(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/thumbnails/{key}"]["get"]

    assert operation["responses"]["200"]["content"] == {
        "image/webp": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"401", "403", "404", "422"} <= set(operation["responses"])
    (parameter,) = operation["parameters"]
    assert parameter["in"] == "path"
    assert parameter["schema"] == {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "Role: `search`" in operation["description"]


@pytest.mark.usefixtures("thumbnailed")
def test_a_served_thumbnail_matches_the_documented_response(
    app: Flask, client: FlaskClient
) -> None:
    key = result_thumbnail_keys(client)[0]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema["/api/v1/thumbnails/{key}"]["GET"]

    response = operation.Case(path_parameters={"key": key}).call_and_validate(
        headers=auth(ApiRole.SEARCH),
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )

    assert response.status_code == 200
