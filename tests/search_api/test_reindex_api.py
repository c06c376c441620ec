"""POST /api/v1/reindex and GET /api/v1/reindex/<job>: real app, store, model and Redis."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ingest.images.sources import SourceResolver
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import load_runtime
from ingest.reindex.reindexer import Reindexer
from ingest.state.reindex_jobs import ReindexJobs
from schemas.queue import QUEUE, REINDEX_PAGE_TASK
from schemas.settings import ApiRole, SourceSettings
from search_api.web.services import Services
from tests.ingest.catalog_samples import CATALOG_SIZE
from tests.ingest.test_reindex import OTHER_MODEL_ID, register_other_model
from tests.search_api.conftest import Catalog, auth, error_of
from tests.support import TEST_MODEL_ID


@pytest.fixture(autouse=True)
def other_model(registry: ModelRegistry) -> None:
    register_other_model(registry)


def run_queued_reindex(services: Services, file_roots: list[Path]) -> list[str]:
    """Take the queued re-index tasks off Redis and run their jobs here (the store is ours).

    The "worker" may read the catalog's folder (bulk ingestion stored file:// URIs).
    """
    client = services.tracker.client
    settings = services.settings.model_copy(
        update={"sources": SourceSettings(file_roots=file_roots)}
    )
    reindexer = Reindexer(
        settings=settings,
        store=services.store,
        jobs=ReindexJobs(client, prefix=settings.collection_prefix),
        resolver=SourceResolver(settings, blobs=services.blobs),
        load_runtime=functools.partial(load_runtime, settings),
    )
    job_ids = []
    while (raw := client.rpop(QUEUE)) is not None:
        assert isinstance(raw, bytes | str)
        message: dict[str, Any] = json.loads(raw)
        assert message["headers"]["task"] == REINDEX_PAGE_TASK
        args = json.loads(base64.b64decode(message["body"]))[0]
        assert args[1:] == [0, None]  # the first page
        job_ids.append(args[0])
        reindexer.run(args[0])
    return job_ids


def test_reindex_starts_a_job_that_switches_the_default_model(
    client: FlaskClient, catalog: Catalog, services: Services
) -> None:
    started = client.post("/api/v1/reindex", json={"to": OTHER_MODEL_ID})

    assert started.status_code == 202, started.get_json()
    job = started.get_json()
    assert (job["state"], job["source"], job["target"]) == ("queued", TEST_MODEL_ID, OTHER_MODEL_ID)
    assert (job["drop_old"], job["allow_failures"], job["switched"]) == (False, False, False)
    assert client.get(f"/api/v1/reindex/{job['job_id']}").get_json() == job
    # Until a worker has done it, searches use the current collection.
    assert client.get("/api/v1/collections").get_json()["default_model"] == TEST_MODEL_ID

    assert run_queued_reindex(services, [catalog.images]) == [job["job_id"]]

    done = client.get(f"/api/v1/reindex/{job['job_id']}").get_json()
    assert (done["state"], done["switched"]) == ("done", True), json.dumps(done, indent=1)
    assert (done["total"], done["done"], done["failed"]) == (CATALOG_SIZE, CATALOG_SIZE, 0)
    collections = client.get("/api/v1/collections").get_json()
    assert collections["default_model"] == OTHER_MODEL_ID
    assert {c["model_id"]: c["current"] for c in collections["collections"]} == {
        TEST_MODEL_ID: False,
        OTHER_MODEL_ID: True,
    }
    models = {m["id"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert models[OTHER_MODEL_ID]["default"]
    assert models[OTHER_MODEL_ID]["enabled"]
    assert not models[TEST_MODEL_ID]["default"]
    # A query without a model now answers from the new collection.
    hits = client.post("/api/v1/similar/item", json={"item_id": "sku-01", "limit": 3})
    assert hits.status_code == 200, hits.get_json()
    assert hits.get_json()["model_id"] == OTHER_MODEL_ID
    assert client.get("/readyz").get_json()["checks"]["model"]["ok"]


def test_reindex_to_the_current_model_is_409(client: FlaskClient, catalog: Catalog) -> None:
    error = error_of(client.post("/api/v1/reindex", json={"to": TEST_MODEL_ID}), 409, "same_model")

    assert "models register FILE --id NEW_ID" in error["message"]


def test_reindex_to_a_model_not_installed_is_404(client: FlaskClient, catalog: Catalog) -> None:
    error_of(client.post("/api/v1/reindex", json={"to": "no-such-model"}), 404, "model_not_found")


def test_reindex_with_nothing_stored_is_404(client: FlaskClient) -> None:
    error_of(
        client.post("/api/v1/reindex", json={"to": OTHER_MODEL_ID}), 404, "collection_not_found"
    )


def test_reindex_request_is_validated(client: FlaskClient, catalog: Catalog) -> None:
    error = error_of(client.post("/api/v1/reindex", json={"to": "Bad Id"}), 422, "validation_error")
    assert error["details"]["field"] == "to"
    error_of(client.post("/api/v1/reindex", json={}), 422, "validation_error")


def test_unknown_reindex_job_is_404(client: FlaskClient) -> None:
    error_of(client.get("/api/v1/reindex/0123456789abcdef"), 404, "job_not_found")
    error_of(client.get(f"/api/v1/reindex/{'x' * 300}"), 404, "job_not_found")


@pytest.mark.parametrize("role", [ApiRole.SEARCH, ApiRole.INGEST])
def test_reindex_needs_the_admin_role(
    anonymous: FlaskClient, catalog: Catalog, role: ApiRole
) -> None:
    started = anonymous.post("/api/v1/reindex", json={"to": OTHER_MODEL_ID}, headers=auth(role))
    error_of(started, 403, "forbidden")
    error_of(anonymous.get("/api/v1/reindex/abc", headers=auth(role)), 403, "forbidden")
    error_of(anonymous.post("/api/v1/reindex", json={"to": OTHER_MODEL_ID}), 401, "unauthorized")
