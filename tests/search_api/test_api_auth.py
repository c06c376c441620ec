"""API keys and roles: 401 without a known key, 403 without the role, open API without keys."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from ingest.store.base import VectorStore
from schemas.settings import ApiKey, ApiRole, ApiSettings, Settings
from search_api.web.app import create_app
from search_api.web.auth import KeyRing
from search_api.web.services import Services
from tests.search_api.conftest import KEYS, Catalog, auth, jpeg

SEARCH, INGEST, ADMIN = ApiRole.SEARCH, ApiRole.INGEST, ApiRole.ADMIN


def _upload() -> dict[str, Any]:
    return {"data": {"images": (io.BytesIO(jpeg(7)), "a.jpg"), "item_id": "auth-1"}}


# (method, path, request kwargs factory, role that may call it)
ENDPOINTS: list[tuple[str, str, Any, ApiRole]] = [
    ("POST", "/api/v1/similar/item", lambda: {"json": {"item_id": "sku-01"}}, SEARCH),
    ("POST", "/api/v1/facets", lambda: {"json": {"key": "brand"}}, SEARCH),
    ("POST", "/api/v1/recommend", lambda: {"json": {"positive": ["sku-01"]}}, SEARCH),
    ("POST", "/api/v1/duplicates/item", lambda: {"json": {"item_id": "sku-01"}}, SEARCH),
    ("GET", "/api/v1/items/sku-01", dict, SEARCH),
    ("GET", "/api/v1/collections", dict, SEARCH),
    ("GET", "/api/v1/models", dict, SEARCH),
    ("POST", "/api/v1/uploads", _upload, INGEST),
    ("POST", "/api/v1/blobs", lambda: {"data": {"file": (io.BytesIO(jpeg(8)), "b.jpg")}}, INGEST),
    ("DELETE", "/api/v1/items/sku-09", dict, INGEST),
    ("PATCH", "/api/v1/items/sku-09", lambda: {"json": {"metadata": {"a": 1}}}, INGEST),
    ("GET", "/api/v1/deadletters", dict, ADMIN),
    ("POST", "/api/v1/deadletters/retry", dict, ADMIN),
    ("GET", "/api/v1/duplicates/jobs", dict, ADMIN),
    ("POST", "/api/v1/duplicates/jobs", lambda: {"json": {}}, ADMIN),
    (
        "POST",
        "/api/v1/duplicates/dismissals",
        lambda: {"json": {"point_a": "a", "point_b": "b"}},
        ADMIN,
    ),
]
IDS = [f"{method} {path}" for method, path, _, _ in ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "kwargs", "role"), ENDPOINTS, ids=IDS)
def test_each_role_may_call_its_endpoints_and_only_those(
    anonymous: FlaskClient,
    catalog: Catalog,
    method: str,
    path: str,
    kwargs: Any,
    role: ApiRole,
) -> None:
    for caller in (SEARCH, INGEST, ADMIN):
        response = anonymous.open(path, method=method, headers=auth(caller), **kwargs())
        allowed = caller in (role, ADMIN)
        if allowed:
            assert response.status_code < 300, (caller, response.get_json())
        else:
            assert response.status_code == 403, (caller, response.get_json())
            error = response.get_json()["error"]
            assert error["code"] == "forbidden"
            assert error["details"]["required_role"] == role.value


@pytest.mark.parametrize(("method", "path", "kwargs", "role"), ENDPOINTS, ids=IDS)
def test_missing_or_unknown_key_is_401(
    anonymous: FlaskClient, method: str, path: str, kwargs: Any, role: ApiRole
) -> None:
    missing = anonymous.open(path, method=method, **kwargs())
    unknown = anonymous.open(
        path, method=method, headers={"Authorization": "Bearer not-a-key"}, **kwargs()
    )

    for response in (missing, unknown):
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_auth_comes_before_validation(anonymous: FlaskClient) -> None:
    # A caller without a key learns nothing about what a valid body looks like.
    response = anonymous.post("/api/v1/similar/item", json={"limit": "not a number"})

    assert response.status_code == 401


def test_x_api_key_header_works_too(anonymous: FlaskClient, catalog: Catalog) -> None:
    response = anonymous.get("/api/v1/collections", headers={"X-API-Key": KEYS[SEARCH]})

    assert response.status_code == 200


def test_health_metrics_and_openapi_need_no_key(anonymous: FlaskClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        assert anonymous.get(path).status_code == 200, path


def test_keyring_matches_the_exact_key_only() -> None:
    ring = KeyRing([ApiKey(name="ci", key="0123456789abcdef", roles=[SEARCH])])

    assert ring.identify("0123456789abcdef") is not None
    assert ring.identify("0123456789abcdeF") is None
    assert ring.identify("0123456789abcdef ") is None
    assert ring.identify("") is None


def test_without_keys_the_api_is_open_and_says_so(
    api_settings: Settings, store: VectorStore, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    services = Services(api_settings.model_copy(update={"api": ApiSettings()}), store=store)
    with caplog.at_level(logging.WARNING, logger="search_api.web.app"):
        app = create_app(services=services)
    try:
        client = app.test_client()
        deadletters = client.get("/api/v1/deadletters")
        ready = client.get("/readyz").get_json()
    finally:
        services.close()

    assert "API is OPEN" in caplog.text
    assert deadletters.status_code == 200
    assert ready["auth"] == "open"


def test_with_keys_readiness_says_keys_are_required(anonymous: FlaskClient) -> None:
    assert anonymous.get("/readyz").get_json()["auth"] == "api_keys"


def test_keys_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LOOKALIKE_API__KEYS",
        '[{"name": "catalog", "key": "catalog-key-0123456789", "roles": ["search", "ingest"]}]',
    )
    monkeypatch.setenv("LOOKALIKE_API__MAX_IMAGES_PER_REQUEST", "4")

    api = Settings().api

    (key,) = api.keys
    assert (key.name, key.roles) == ("catalog", [SEARCH, INGEST])
    assert key.key.get_secret_value() == "catalog-key-0123456789"
    assert "catalog-key" not in repr(api)  # secrets stay out of logs and reprs
    assert api.max_images_per_request == 4
