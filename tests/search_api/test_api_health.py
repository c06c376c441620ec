"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import io
import re
from typing import Any

from flask.testing import FlaskClient

from ingest.store.qdrant import QdrantStore
from schemas.settings import Settings
from search_api.web.app import create_app
from search_api.web.services import Services
from tests.search_api.conftest import Catalog, free_port, jpeg


def test_healthz(anonymous: FlaskClient) -> None:
    response = anonymous.get("/healthz")

    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_when_everything_answers(anonymous: FlaskClient) -> None:
    response = anonymous.get("/readyz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"redis", "store", "model"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "dinov2-vits14-tiny-random@sha256:" in body["checks"]["model"]["message"]


def _not_ready(settings: Settings, store: QdrantStore) -> dict[str, Any]:
    services = Services(settings, store=store)
    try:
        response = create_app(services=services).test_client().get("/readyz")
    finally:
        services.close()
    assert response.status_code == 503
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"] == "not_ready"
    return error


def test_readyz_names_redis_when_it_is_down(api_settings: Settings, store: QdrantStore) -> None:
    settings = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}"})

    error = _not_ready(settings, store)

    checks = error["details"]["checks"]
    assert "redis" in error["message"]
    assert (checks["redis"]["ok"], checks["store"]["ok"], checks["model"]["ok"]) == (
        False,
        True,
        True,
    )


def test_readyz_names_the_model_when_it_is_missing(
    api_settings: Settings, store: QdrantStore
) -> None:
    settings = api_settings.model_copy(update={"default_model": "not-installed"})

    checks = _not_ready(settings, store)["details"]["checks"]

    assert not checks["model"]["ok"]
    assert "not-installed" in checks["model"]["message"]
    assert checks["redis"]["ok"]
    assert checks["store"]["ok"]


def test_readyz_names_the_store_when_it_is_down(api_settings: Settings) -> None:
    from qdrant_client import QdrantClient

    dead = QdrantStore(
        QdrantClient(url=f"http://127.0.0.1:{free_port()}", timeout=2, check_compatibility=False)
    )
    try:
        checks = _not_ready(api_settings, dead)["details"]["checks"]
    finally:
        dead.close()

    assert not checks["store"]["ok"]
    assert checks["redis"]["ok"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text exposition."""
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


def test_metrics_time_requests_and_embeddings_and_read_the_queue(
    client: FlaskClient, catalog: Catalog
) -> None:
    client.post("/api/v1/similar/item", json={"item_id": "sku-01"})
    client.post("/api/v1/similar/item", json={"item_id": "nope"})
    client.post("/api/v1/similar/image", data={"image": (io.BytesIO(jpeg(9)), "q.jpg")})
    client.post(
        "/api/v1/uploads", data={"images": (io.BytesIO(jpeg(10)), "a.jpg"), "item_id": "m-1"}
    )

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    requests = "lookalike_http_request_duration_seconds_count"
    assert metric(text, requests, endpoint="/api/v1/similar/item", status="200") == 1
    assert metric(text, requests, endpoint="/api/v1/similar/item", status="404") == 1
    assert metric(text, requests, endpoint="/api/v1/uploads", method="POST") == 1
    assert (
        metric(text, "lookalike_embed_duration_seconds_count", model="dinov2-vits14-tiny-random")
        == 1
    )
    assert metric(text, "lookalike_queue_depth") == 1
    assert metric(text, "lookalike_dead_letters") == 0
    assert metric(text, "lookalike_queue_up") == 1


def test_each_app_has_its_own_metrics(services: Services, client: FlaskClient) -> None:
    other = create_app(services=services).test_client()
    client.get("/healthz")
    client.get("/healthz")
    other.get("/healthz")

    mine = client.get("/metrics").get_data(as_text=True)
    theirs = other.get("/metrics").get_data(as_text=True)

    count = "lookalike_http_request_duration_seconds_count"
    assert metric(mine, count, endpoint="/healthz") == 2
    assert metric(theirs, count, endpoint="/healthz") == 1


def test_openapi_document(anonymous: FlaskClient) -> None:
    spec = anonymous.get("/api/v1/openapi.json").get_json()

    assert spec["openapi"].startswith("3.1")
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    upload = spec["paths"]["/api/v1/uploads"]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data"}
    form = spec["components"]["schemas"]["UploadForm"]["properties"]
    assert form["images"]["items"] == {"type": "string", "format": "binary"}
    assert set(upload["responses"]) >= {"202", "401", "403", "413", "422"}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            errors = [code for code in responses if code >= "400"]
            assert "422" in errors, (method, path)  # every error documented, as the body
            for code in errors:
                assert responses[code]["content"]["application/json"]["schema"] == error_ref
    item = spec["paths"]["/api/v1/similar/item"]["post"]
    assert item["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "Role: `search`" in item["description"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_swagger_page_is_served(anonymous: FlaskClient) -> None:
    response = anonymous.get("/api/v1/docs/swagger/")

    assert response.status_code == 200
    assert "/api/v1/docs/openapi.json" in response.get_data(as_text=True)
