"""Uploads, event status, items and dead letters: 202, then the in-process worker, then results."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from ingest.models.registry import ModelRegistry
from ingest.store.qdrant import QdrantStore
from schemas.settings import Settings
from search_api.web.services import Services
from tests.search_api.conftest import (
    Catalog,
    InProcessWorker,
    admin_client,
    closing_app,
    error_of,
    jpeg,
)
from tests.support import TEST_MODEL_ID

SECOND_MODEL = "second-model"


@dataclass(frozen=True)
class TwoModels:
    """An app whose uploads go to two enabled models, the second not installed yet."""

    client: FlaskClient
    worker: InProcessWorker


@pytest.fixture
def two_models(api_settings: Settings, store: QdrantStore, catalog: Catalog) -> Iterator[TwoModels]:
    """Uploads may name SECOND_MODEL: enabled, but its file is missing until a test adds it."""
    settings = api_settings.model_copy(update={"enabled_models": [TEST_MODEL_ID, SECOND_MODEL]})
    services = Services(settings, store=store)
    with closing_app(services) as app:
        yield TwoModels(admin_client(app), InProcessWorker(services))


def upload(client: FlaskClient, images: list[bytes], item_ids: list[str], **fields: Any) -> Any:
    data: dict[str, Any] = {
        "images": [(io.BytesIO(image), f"{i}.jpg") for i, image in enumerate(images)],
        "item_id": item_ids,
        **fields,
    }
    return client.post("/api/v1/uploads", data=data)


def status_of(client: FlaskClient, event_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def test_upload_is_queued_then_done_and_searchable(
    client: FlaskClient, catalog: Catalog, worker: InProcessWorker, services: Services
) -> None:
    image = jpeg(40)
    response = upload(
        client, [image], ["new-1"], metadata=json.dumps({"brand": "acme", "price": 7})
    )

    assert response.status_code == 202, response.get_json()
    (accepted,) = response.get_json()["events"]
    assert accepted["item_id"] == "new-1"
    assert accepted["image_uri"] == f"blob://{accepted['image_sha256']}"
    assert services.blobs.path_for(accepted["image_uri"]).read_bytes() == image
    assert status_of(client, accepted["event_id"])["status"] == "queued"

    (result,) = worker.run()

    assert result.outcome.value == "done"
    assert status_of(client, accepted["event_id"])["status"] == "done"
    hits = client.post(
        "/api/v1/similar/image", data={"image": (io.BytesIO(image), "q.jpg"), "limit": "1"}
    ).get_json()["hits"]
    assert hits[0]["item_id"] == "new-1"
    assert hits[0]["payload"]["brand"] == "acme"
    assert hits[0]["payload"]["price"] == 7


def test_several_images_in_one_request_keep_their_order(
    client: FlaskClient, catalog: Catalog, worker: InProcessWorker
) -> None:
    response = upload(
        client,
        [jpeg(41), jpeg(42), jpeg(43)],
        ["multi-a", "multi-b", "multi-c"],
        metadata=[json.dumps({"n": 1}), json.dumps({"n": 2}), json.dumps({"n": 3})],
    )

    assert response.status_code == 202, response.get_json()
    events = response.get_json()["events"]
    assert [e["item_id"] for e in events] == ["multi-a", "multi-b", "multi-c"]
    assert len({e["event_id"] for e in events}) == 3

    assert [r.outcome.value for r in worker.run()] == ["done"] * 3

    item = client.get("/api/v1/items/multi-b").get_json()
    assert item["points"][0]["payload"]["n"] == 2


def test_failed_event_has_its_reason_and_a_dead_letter_to_retry(
    two_models: TwoModels, registry: ModelRegistry
) -> None:
    client, worker = two_models.client, two_models.worker
    response = upload(client, [jpeg(44)], ["later"], models=SECOND_MODEL)
    assert response.status_code == 202, response.get_json()
    event_id = response.get_json()["events"][0]["event_id"]
    worker.run()

    state = status_of(client, event_id)
    assert (state["status"], state["reason"]) == ("failed", "model_unavailable")
    assert SECOND_MODEL in state["message"]
    letters = client.get("/api/v1/deadletters").get_json()
    assert letters["count"] == 1
    (letter,) = letters["dead_letters"]
    assert (letter["event_id"], letter["reason"]) == (event_id, "model_unavailable")
    assert letter["event"]["item_id"] == "later"

    # The fix: install the missing model. Then the retried event goes through.
    registry.register(registry.model_path(TEST_MODEL_ID), SECOND_MODEL)
    retried = client.post(f"/api/v1/deadletters/{event_id}/retry")
    assert retried.status_code == 202
    assert retried.get_json() == {"retried": [event_id]}
    assert status_of(client, event_id)["status"] == "queued"
    worker.run()

    assert status_of(client, event_id)["status"] == "done"
    assert client.get("/api/v1/deadletters").get_json()["count"] == 0
    item = client.get("/api/v1/items/later", query_string={"model_id": SECOND_MODEL})
    assert item.status_code == 200
    assert {p["model_id"] for p in item.get_json()["points"]} == {SECOND_MODEL}


def test_retry_all_dead_letters(two_models: TwoModels) -> None:
    client, worker = two_models.client, two_models.worker
    ids = [
        upload(client, [jpeg(45 + i)], [f"dl-{i}"], models=SECOND_MODEL).get_json()["events"][0][
            "event_id"
        ]
        for i in range(2)
    ]
    worker.run()

    response = client.post("/api/v1/deadletters/retry")

    assert response.status_code == 202
    assert sorted(response.get_json()["retried"]) == sorted(ids)
    assert client.get("/api/v1/deadletters").get_json()["count"] == 0
    assert [status_of(client, i)["status"] for i in ids] == ["queued", "queued"]


def test_upload_to_a_model_that_does_not_exist_is_refused_with_the_enabled_ones(
    client: FlaskClient, catalog: Catalog, services: Services, worker: InProcessWorker
) -> None:
    image = jpeg(51)
    response = upload(client, [image], ["nowhere"], models="no-such-model")

    error = error_of(response, 422, "model_not_enabled")
    assert "'no-such-model'" in error["message"]
    assert "no such model" in error["message"]
    assert f"enabled: {TEST_MODEL_ID}" in error["message"]
    assert "LOOKALIKE_ENABLED_MODELS" in error["message"]
    assert error["details"]["field"] == "models"
    assert error["details"]["models"] == ["no-such-model"]
    assert error["details"]["enabled"] == [TEST_MODEL_ID]
    blob = f"blob://{hashlib.sha256(image).hexdigest()}"
    assert not services.blobs.path_for(blob).exists()
    assert worker.run() == []


def test_upload_to_an_installed_model_that_is_not_enabled_is_refused(
    client: FlaskClient, catalog: Catalog, registry: ModelRegistry, worker: InProcessWorker
) -> None:
    registry.register(registry.model_path(TEST_MODEL_ID), SECOND_MODEL)

    response = upload(client, [jpeg(52)], ["elsewhere"], models=[TEST_MODEL_ID, SECOND_MODEL])

    error = error_of(response, 422, "model_not_enabled")
    assert f"{SECOND_MODEL!r} is not enabled" in error["message"]
    assert f"enabled: {TEST_MODEL_ID}" in error["message"]
    assert error["details"]["models"] == [SECOND_MODEL]
    assert worker.run() == []


def test_upload_to_enabled_models_is_accepted(two_models: TwoModels) -> None:
    response = upload(two_models.client, [jpeg(53)], ["both"], models=[TEST_MODEL_ID, SECOND_MODEL])

    assert response.status_code == 202, response.get_json()


def test_unknown_event_and_dead_letter_are_404(client: FlaskClient, catalog: Catalog) -> None:
    event = client.get("/api/v1/events/no-such-event")
    letter = client.post("/api/v1/deadletters/no-such-event/retry")

    assert event.status_code == 404
    assert event.get_json()["error"]["code"] == "event_not_found"
    assert letter.status_code == 404
    assert letter.get_json()["error"]["code"] == "dead_letter_not_found"


def test_get_item_returns_points_and_payload_per_model(
    client: FlaskClient, catalog: Catalog
) -> None:
    response = client.get("/api/v1/items/sku-04", query_string={"with_vectors": "true"})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["item_id"] == "sku-04"
    (point,) = body["points"]
    assert point["model_id"] == TEST_MODEL_ID
    assert point["payload"]["brand"] == "globex"
    assert len(point["vector"]) == 96
    without = client.get("/api/v1/items/sku-04").get_json()["points"][0]
    assert without["vector"] is None


def test_item_ids_may_contain_slashes(
    client: FlaskClient, catalog: Catalog, worker: InProcessWorker
) -> None:
    upload(client, [jpeg(47)], ["shoes/red"])
    worker.run()

    response = client.get("/api/v1/items/shoes/red")

    assert response.status_code == 200
    assert response.get_json()["item_id"] == "shoes/red"


def test_delete_item_through_the_queue(
    client: FlaskClient, catalog: Catalog, worker: InProcessWorker
) -> None:
    response = client.delete("/api/v1/items/sku-02")

    assert response.status_code == 202
    event_id = response.get_json()["event_id"]
    assert status_of(client, event_id)["status"] == "queued"
    assert client.get("/api/v1/items/sku-02").status_code == 200  # not yet: the worker does it
    worker.run()

    assert status_of(client, event_id)["status"] == "done"
    gone = client.get("/api/v1/items/sku-02")
    assert gone.status_code == 404
    assert gone.get_json()["error"]["code"] == "item_not_found"


def test_update_payload_through_the_queue(
    client: FlaskClient, catalog: Catalog, worker: InProcessWorker
) -> None:
    response = client.patch(
        "/api/v1/items/sku-03", json={"metadata": {"price": 99.5, "item_id": "hijack"}}
    )

    assert response.status_code == 202, response.get_json()
    worker.run()

    payload = client.get("/api/v1/items/sku-03").get_json()["points"][0]["payload"]
    assert payload["price"] == 99.5
    assert payload["item_id"] == "sku-03"  # system keys are never overwritten
    assert payload["brand"] == "acme"


def test_bad_files_are_refused_one_by_one_and_the_good_ones_queued(
    client: FlaskClient, catalog: Catalog, services: Services, worker: InProcessWorker
) -> None:
    good, other = jpeg(48), jpeg(54)
    response = upload(
        client, [good, b"not an image at all", other, b""], ["ok", "bad", "ok-2", "empty"]
    )

    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert [(e["index"], e["item_id"]) for e in body["events"]] == [(0, "ok"), (2, "ok-2")]
    rejected = body["rejected"]
    assert [(r["index"], r["item_id"], r["field"]) for r in rejected] == [
        (1, "bad", "images.1"),
        (3, "empty", "images.3"),
    ]
    assert [(r["code"], r["reason"]) for r in rejected] == [
        ("invalid_image", "not_an_image"),
        ("invalid_image", "empty"),
    ]
    assert all(r["message"] for r in rejected)
    assert services.blobs.path_for(body["events"][0]["image_uri"]).read_bytes() == good
    assert [r.outcome.value for r in worker.run()] == ["done", "done"]
    assert status_of(client, body["events"][1]["event_id"])["status"] == "done"


def test_upload_of_only_bad_files_is_a_422_naming_each_and_queues_nothing(
    client: FlaskClient, catalog: Catalog, worker: InProcessWorker
) -> None:
    response = upload(client, [b"not an image", b"nor this"], ["bad-1", "bad-2"])

    error = error_of(response, 422, "invalid_image")
    # The first refusal at the top, as for a single image; every one under `rejected`.
    assert (error["details"]["field"], error["details"]["reason"]) == ("images.0", "not_an_image")
    assert error["details"]["item_id"] == "bad-1"
    assert [r["item_id"] for r in error["details"]["rejected"]] == ["bad-1", "bad-2"]
    assert worker.run() == []


def test_single_bad_image_keeps_its_error(client: FlaskClient, catalog: Catalog) -> None:
    response = upload(client, [b"not an image at all"], ["bad"])

    error = error_of(response, 422, "invalid_image")
    assert error["details"]["reason"] == "not_an_image"
    assert error["details"]["field"] == "images.0"
    assert error["details"]["item_id"] == "bad"


def test_metadata_count_must_match_the_images(client: FlaskClient, catalog: Catalog) -> None:
    response = upload(
        client, [jpeg(49), jpeg(50)], ["a", "b"], metadata=json.dumps({"only": "one"})
    )

    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["field"] == "metadata"
