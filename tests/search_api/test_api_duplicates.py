"""Near-duplicate queries and duplicate jobs: exact and resized copies of catalog images."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from tests.search_api.conftest import Catalog, InProcessWorker
from tests.support import TEST_MODEL_ID


def resized(data: bytes, factor: float) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    out = io.BytesIO()
    image.resize((int(width * factor), int(height * factor))).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def copies(client: FlaskClient, catalog: Catalog, worker: InProcessWorker) -> Catalog:
    """The catalog plus `copy-05` (same bytes as sku-05) and `half-05` (sku-05 at half size)."""
    image = catalog.image(5)
    response = client.post(
        "/api/v1/uploads",
        data={
            "images": [(io.BytesIO(image), "a.jpg"), (io.BytesIO(resized(image, 0.5)), "b.png")],
            "item_id": ["copy-05", "half-05"],
        },
    )
    assert response.status_code == 202, response.get_json()
    assert [r.outcome.value for r in worker.run()] == ["done", "done"]
    return catalog


def point_of(client: FlaskClient, item_id: str) -> str:
    point_id: str = client.get(f"/api/v1/items/{item_id}").get_json()["points"][0]["point_id"]
    return point_id


def test_near_duplicates_of_an_uploaded_image(client: FlaskClient, copies: Catalog) -> None:
    response = client.post(
        "/api/v1/duplicates/image",
        data={"image": (io.BytesIO(copies.image(5)), "q.jpg"), "threshold": "0.99"},
    )

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["threshold"] == 0.99
    found = {hit["item_id"] for hit in body["hits"]}
    assert {"sku-05", "copy-05"} <= found
    assert all(hit["score"] >= 0.99 for hit in body["hits"])


def test_item_near_duplicates_use_the_models_default_threshold(
    client: FlaskClient, copies: Catalog
) -> None:
    response = client.post("/api/v1/duplicates/item", json={"item_id": "sku-05"})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    manifest = client.get("/api/v1/models").get_json()["models"][0]
    assert body["threshold"] == manifest["duplicate_threshold"]
    items = [hit["item_id"] for hit in body["hits"]]
    assert "sku-05" not in items
    assert items[0] == "copy-05"


def test_dismissed_pair_leaves_item_near_duplicates(client: FlaskClient, copies: Catalog) -> None:
    pair = {"point_a": point_of(client, "sku-05"), "point_b": point_of(client, "copy-05")}

    first = client.post("/api/v1/duplicates/dismissals", json=pair)
    again = client.post("/api/v1/duplicates/dismissals", json=pair)
    hits = client.post("/api/v1/duplicates/item", json={"item_id": "sku-05"}).get_json()["hits"]

    assert first.get_json() == {"changed": True}
    assert again.get_json() == {"changed": False}
    assert "copy-05" not in {hit["item_id"] for hit in hits}

    undone = client.delete("/api/v1/duplicates/dismissals", query_string=pair)
    assert undone.get_json() == {"changed": True}
    hits = client.post("/api/v1/duplicates/item", json={"item_id": "sku-05"}).get_json()["hits"]
    assert "copy-05" in {hit["item_id"] for hit in hits}


def test_duplicate_job_runs_and_pages_its_groups(
    client: FlaskClient, copies: Catalog, worker: InProcessWorker
) -> None:
    started = client.post("/api/v1/duplicates/jobs", json={"threshold": 0.99})

    assert started.status_code == 202, started.get_json()
    job = started.get_json()
    assert (job["status"], job["model_id"], job["threshold"]) == ("queued", TEST_MODEL_ID, 0.99)
    assert client.get(f"/api/v1/duplicates/jobs/{job['job_id']}").get_json()["status"] == "queued"

    worker.run()

    done = client.get(f"/api/v1/duplicates/jobs/{job['job_id']}").get_json()
    assert done["status"] == "done"
    assert done["points_scanned"] == done["points_total"] == 14
    page = client.get(
        f"/api/v1/duplicates/jobs/{job['job_id']}/groups", query_string={"limit": 1}
    ).get_json()
    (group,) = page["groups"]
    members = {group["seed"]["item_id"], *(m["item_id"] for m in group["members"])}
    assert {"sku-05", "copy-05"} <= members
    assert page["total"] >= 1
    listed = client.get("/api/v1/duplicates/jobs").get_json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]


def test_dismissal_hides_a_pair_from_job_groups(
    client: FlaskClient, copies: Catalog, worker: InProcessWorker
) -> None:
    job_id = client.post("/api/v1/duplicates/jobs", json={"threshold": 0.999}).get_json()["job_id"]
    worker.run()
    before = client.get(f"/api/v1/duplicates/jobs/{job_id}/groups").get_json()["groups"]
    exact = [
        g
        for g in before
        if {g["seed"]["item_id"], g["members"][0]["item_id"]} == {"sku-05", "copy-05"}
    ]
    assert len(exact) == 1, before

    client.post(
        "/api/v1/duplicates/dismissals",
        json={"point_a": point_of(client, "sku-05"), "point_b": point_of(client, "copy-05")},
    )

    after = client.get(f"/api/v1/duplicates/jobs/{job_id}/groups").get_json()["groups"]
    assert all(
        {g["seed"]["item_id"], *(m["item_id"] for m in g["members"])} != {"sku-05", "copy-05"}
        for g in after
    )


def test_duplicate_errors(client: FlaskClient, catalog: Catalog) -> None:
    def code(response: Any) -> tuple[int, str]:
        return response.status_code, response.get_json()["error"]["code"]

    assert code(client.get("/api/v1/duplicates/jobs/nope")) == (404, "job_not_found")
    assert code(client.get("/api/v1/duplicates/jobs/nope/groups")) == (404, "job_not_found")
    assert code(client.post("/api/v1/duplicates/item", json={"item_id": "nope"})) == (
        404,
        "item_not_found",
    )
    assert code(client.post("/api/v1/duplicates/jobs", json={"model_id": "no-such-model"})) == (
        404,
        "model_not_found",
    )
    assert code(
        client.post("/api/v1/duplicates/dismissals", json={"point_a": "x", "point_b": "x"})
    ) == (422, "validation_error")
    assert code(
        client.post("/api/v1/duplicates/item", json={"item_id": "sku-01", "threshold": 1.5})
    ) == (422, "validation_error")
    not_an_image = client.post(
        "/api/v1/duplicates/image", data={"image": (io.BytesIO(b"GIF89a broken"), "x.gif")}
    )
    assert code(not_an_image) == (422, "invalid_image")
