"""Similarity endpoints over the real catalog: image, item and vector queries, filters, paging."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from search_api.queries.similar import embed_query_image
from search_api.web.services import Services
from tests.ingest.catalog_samples import CATALOG_SIZE, PRICES
from tests.search_api.conftest import Catalog
from tests.support import TEST_MODEL_ID


def hits_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["model_id"] == TEST_MODEL_ID
    hits: list[dict[str, Any]] = body["hits"]
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    return hits


def item_ids(hits: list[dict[str, Any]]) -> list[str]:
    return [hit["item_id"] for hit in hits]


def test_image_query_finds_the_same_image_first(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post(
        "/api/v1/similar/image",
        data={"image": (io.BytesIO(catalog.image(5)), "query.jpg"), "limit": "100"},
    )

    hits = hits_of(response)
    assert hits[0]["item_id"] == "sku-05"
    assert hits[0]["score"] > 0.999
    assert len(hits) == CATALOG_SIZE
    assert {"brand", "category", "price", "image_sha256"} <= set(hits[0]["payload"])


def test_image_query_takes_a_json_filter_and_a_threshold(
    client: FlaskClient, catalog: Catalog
) -> None:
    shoes = {"must": [{"kind": "match", "key": "category", "value": "shoes"}]}
    response = client.post(
        "/api/v1/similar/image",
        data={
            "image": (io.BytesIO(catalog.image(4)), "query.jpg"),
            "filter": json.dumps(shoes),
            "score_threshold": "0.999",
            "model_id": TEST_MODEL_ID,
        },
    )

    assert item_ids(hits_of(response)) == ["sku-04"]


def test_item_query_leaves_the_item_out(client: FlaskClient, catalog: Catalog) -> None:
    hits = hits_of(client.post("/api/v1/similar/item", json={"item_id": "sku-03", "limit": 100}))

    assert "sku-03" not in item_ids(hits)
    assert len(hits) == CATALOG_SIZE - 1


def test_vector_query_ranks_like_the_image_query(
    client: FlaskClient, catalog: Catalog, services: Services
) -> None:
    vector = embed_query_image(services.settings, TEST_MODEL_ID, catalog.image(7))

    by_vector = hits_of(client.post("/api/v1/similar/vector", json={"vector": vector}))
    by_image = hits_of(
        client.post("/api/v1/similar/image", data={"image": (io.BytesIO(catalog.image(7)), "q")})
    )

    assert [h["id"] for h in by_vector] == [h["id"] for h in by_image]
    assert by_vector[0]["item_id"] == "sku-07"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"kind": "match", "key": "brand", "value": "globex"}, {1, 4, 7, 10}),
        ({"kind": "any", "key": "brand", "values": ["acme", "initech"]}, {2, 3, 5, 6, 8, 9, 11}),
        ({"kind": "range", "key": "price", "lte": 10}, {2, 4, 6, 8}),
        ({"kind": "range", "key": "price", "gt": 10, "lt": 30}, {1, 9, 10}),
    ],
    ids=["match", "any-of", "range-lte", "range-open"],
)
def test_payload_filters(
    client: FlaskClient, catalog: Catalog, condition: dict[str, Any], expected: set[int]
) -> None:
    # sku-00 is the query item: left out whatever the filter says.
    response = client.post(
        "/api/v1/similar/item",
        json={"item_id": "sku-00", "limit": 100, "filter": {"must": [condition]}},
    )

    assert set(item_ids(hits_of(response))) == {f"sku-{i:02d}" for i in expected}


def test_must_not_filter(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post(
        "/api/v1/similar/item",
        json={
            "item_id": "sku-00",
            "limit": 100,
            "filter": {"must_not": [{"kind": "match", "key": "category", "value": "shoes"}]},
        },
    )

    assert set(item_ids(hits_of(response))) == {f"sku-{i:02d}" for i in range(1, 12, 2)}


def test_limit_and_offset_page_through_the_ranking(client: FlaskClient, catalog: Catalog) -> None:
    everything = hits_of(client.post("/api/v1/similar/item", json={"item_id": "sku-01"}))
    page = hits_of(
        client.post("/api/v1/similar/item", json={"item_id": "sku-01", "limit": 3, "offset": 2})
    )

    assert [h["id"] for h in page] == [h["id"] for h in everything[2:5]]


def test_score_threshold_cuts_the_ranking(client: FlaskClient, catalog: Catalog) -> None:
    everything = hits_of(client.post("/api/v1/similar/item", json={"item_id": "sku-06"}))
    threshold = (everything[1]["score"] + everything[2]["score"]) / 2

    cut = hits_of(
        client.post(
            "/api/v1/similar/item", json={"item_id": "sku-06", "score_threshold": threshold}
        )
    )

    assert [h["id"] for h in cut] == [h["id"] for h in everything[:2]]


def test_groups_page_with_a_cursor(client: FlaskClient, catalog: Catalog) -> None:
    query = {"item_id": "sku-00", "group_by": "product_id", "limit": 2}
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        response = client.post("/api/v1/groups", json={**query, "cursor": cursor})
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        seen += [group["key"] for group in page["groups"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Six products of two items each; sku-00's own item is left out, its partner is not.
    assert sorted(seen) == [f"p{i}" for i in range(CATALOG_SIZE // 2)]


def test_groups_by_uploaded_image(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post(
        "/api/v1/groups/image",
        data={
            "image": (io.BytesIO(catalog.image(9)), "q.jpg"),
            "group_by": "brand",
            "group_size": "2",
        },
    )

    assert response.status_code == 200, response.get_json()
    groups = response.get_json()["groups"]
    assert len(groups) == 3
    assert groups[0]["hits"][0]["item_id"] == "sku-09"
    assert all(1 <= len(group["hits"]) <= 2 for group in groups)


def test_bad_cursor_is_a_422(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post(
        "/api/v1/groups", json={"item_id": "sku-00", "group_by": "brand", "cursor": "bogus"}
    )

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_query"
    assert "cursor" in response.get_json()["error"]["message"]


def test_facets_count_values_under_a_filter(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post(
        "/api/v1/facets",
        json={
            "key": "brand",
            "filter": {"must": [{"kind": "match", "key": "category", "value": "shoes"}]},
        },
    )

    assert response.status_code == 200, response.get_json()
    counts = {c["value"]: c["count"] for c in response.get_json()["counts"]}
    assert counts == {"acme": 2, "globex": 2, "initech": 2}


def test_recommend_from_positive_and_negative_items(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post(
        "/api/v1/recommend",
        json={
            "positive": ["sku-01", "sku-03"],
            "negative": ["sku-02"],
            "filter": {"must": [{"kind": "match", "key": "category", "value": "bags"}]},
            "limit": 100,
        },
    )

    hits = hits_of(response)
    assert set(item_ids(hits)) == {"sku-05", "sku-07", "sku-09", "sku-11"}


def test_clusters_kmeans_covers_every_point(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post("/api/v1/clusters", json={"k": 3, "payload_fields": ["brand"]})

    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["points"] == CATALOG_SIZE
    assert len(result["clusters"]) == 3
    members = [m for cluster in result["clusters"] for m in cluster["members"]]
    assert sorted(m["item_id"] for m in members) == [f"sku-{i:02d}" for i in range(CATALOG_SIZE)]
    assert all("brand" in m["payload"] for m in members)


def test_clusters_density_method(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post("/api/v1/clusters", json={"method": "hdbscan", "min_cluster_size": 2})

    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    clustered = sum(c["size"] for c in result["clusters"]) + len(result["noise"])
    assert clustered == result["points"] == CATALOG_SIZE


def test_too_many_points_to_cluster_is_a_422(client: FlaskClient, catalog: Catalog) -> None:
    response = client.post("/api/v1/clusters", json={"k": 2, "max_points": 5})

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "too_many_points"


def test_prices_in_payload_survive_the_round_trip(client: FlaskClient, catalog: Catalog) -> None:
    hits = hits_of(client.post("/api/v1/similar/item", json={"item_id": "sku-00", "limit": 100}))

    prices = {hit["item_id"]: hit["payload"]["price"] for hit in hits}
    assert prices == {f"sku-{i:02d}": PRICES[i] for i in range(1, CATALOG_SIZE)}
