"""Grouped queries with cursors, facets and recommendations, on real qdrant-client local mode."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient

from ingest.errors import ItemNotFound
from ingest.ingestion.bulk import BulkIngestor, catalog_sources
from ingest.models.runtime import load_runtime
from ingest.store.base import VectorStore, point_id
from ingest.store.current import open_store
from ingest.store.qdrant import QdrantStore
from schemas.models import ModelManifest, ModelSpec
from schemas.points import (
    MatchCondition,
    NewPoint,
    PayloadFilter,
    PointGroup,
    RangeCondition,
    ScoredPoint,
)
from schemas.queries import (
    MAX_CURSOR_CHARS,
    FacetQuery,
    GroupPage,
    GroupQuery,
    RecommendQuery,
    SimilarityQuery,
)
from schemas.settings import Settings
from search_api.queries import similar as queries
from search_api.queries.similar import facet_counts, group_query, recommend_items, run_query
from tests.ingest.catalog_samples import CATALOG_SIZE, catalog_row, write_csv, write_picture
from tests.support import TEST_MODEL_ID

DIM = 32
MODEL_ID = "blobs"
CATEGORIES = ("shoes", "bags", "hats")
BRANDS = ("acme", "globex", "initech", "umbrella")
PER_BLOB = 21  # 7 products of 3 items each
MANIFEST = ModelManifest(
    spec=ModelSpec(id=MODEL_ID, family="custom", dimension=DIM), sha256="12" * 32, source="test"
)


def blob_catalog(seed: int = 11) -> list[NewPoint]:
    """Three tight, orthogonal blobs (one per category); shoes-00 has a second image."""
    rng = np.random.default_rng(seed)
    centres, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))

    def near(b: int) -> list[float]:
        vector = centres[:, b] + 0.1 * rng.normal(size=DIM)
        return [float(x) for x in vector / np.linalg.norm(vector)]

    points = []
    for b, category in enumerate(CATEGORIES):
        for j in range(PER_BLOB):
            points.append(
                NewPoint(
                    item_id=f"{category}-{j:02d}",
                    image_sha256=f"{b * 100 + j:064x}",
                    vector=near(b),
                    source_uri=f"file:///catalog/{category}/{j}.jpg",
                    metadata={
                        "category": category,
                        "product_id": f"{category}-p{j // 3}",
                        "brand": BRANDS[j % len(BRANDS)],
                        "shelf": j % 5,
                        "price": float(j),
                    },
                )
            )
    second = points[0].model_copy(update={"image_sha256": "f" * 64, "vector": near(0)})
    return [*points, second]


def pid(point: NewPoint) -> str:
    return point_id(point.item_id, point.image_sha256)


@pytest.fixture(scope="module")
def points() -> list[NewPoint]:
    return blob_catalog()


@pytest.fixture(scope="module")
def store(points: list[NewPoint]) -> Iterator[QdrantStore]:
    # Read-only for every test here, so one store serves the whole module.
    opened = QdrantStore(QdrantClient(location=":memory:"))
    opened.upsert(MANIFEST, points)
    yield opened
    opened.close()


def cosines(points: list[NewPoint], query: list[float]) -> dict[str, float]:
    """Reference scores: cosine of every point to the query, by point id."""
    q = np.array(query) / np.linalg.norm(query)
    return {pid(p): float(np.array(p.vector) @ q) for p in points}


def all_pages(settings: Settings, store: QdrantStore, **fields: Any) -> list[GroupPage]:
    """Follow next_cursor from the first page to the last."""
    pages: list[GroupPage] = []
    cursor: str | None = None
    while True:
        query = GroupQuery.model_validate({"model_id": MODEL_ID, **fields, "cursor": cursor})
        pages.append(group_query(settings, store, query))
        cursor = pages[-1].next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def groups_of(pages: list[GroupPage]) -> list[PointGroup]:
    return [group for page in pages for group in page.groups]


# --- grouped queries ----------------------------------------------------------------------


def test_group_pages_visit_every_group_once_in_score_order(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    query = points[5].vector
    scores = cosines(points, query)
    by_product: dict[str, list[str]] = {}
    for p in sorted(points, key=lambda p: -scores[pid(p)]):
        by_product.setdefault(str(p.metadata["product_id"]), []).append(pid(p))

    pages = all_pages(settings, store, vector=query, group_by="product_id", limit=4, group_size=2)

    assert [len(page.groups) for page in pages] == [4, 4, 4, 4, 4, 1]
    groups = groups_of(pages)
    expected_order = sorted(by_product, key=lambda key: -scores[by_product[key][0]])
    assert [group.key for group in groups] == expected_order
    for group in groups:
        assert [hit.id for hit in group.hits] == by_product[str(group.key)][:2]
        assert [hit.score for hit in group.hits] == pytest.approx(
            [scores[hit.id] for hit in group.hits], abs=1e-5
        )
    assert not any(page.cursor_limit_reached for page in pages)


def test_group_size_caps_the_hits_of_each_group(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    base = {"model_id": MODEL_ID, "vector": points[0].vector, "group_by": "product_id"}

    one = group_query(settings, store, GroupQuery.model_validate({**base, "group_size": 1}))
    many = group_query(settings, store, GroupQuery.model_validate({**base, "group_size": 10}))

    assert {len(group.hits) for group in one.groups} == {1}
    sizes = Counter(str(p.metadata["product_id"]) for p in points)
    assert {group.key: len(group.hits) for group in many.groups} == {
        group.key: sizes[str(group.key)] for group in many.groups
    }
    assert sizes["shoes-p0"] == 4


def test_group_query_by_item_leaves_the_item_out(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    pages = all_pages(
        settings, store, item_id="shoes-00", group_by="product_id", limit=5, group_size=10
    )

    hits = [hit for group in groups_of(pages) for hit in group.hits]
    assert "shoes-00" not in {hit.item_id for hit in hits}
    assert len({hit.id for hit in hits}) == len(hits) == len(points) - 2
    shoes_p0 = next(g for g in groups_of(pages) if g.key == "shoes-p0")
    assert sorted(hit.item_id for hit in shoes_p0.hits) == ["shoes-01", "shoes-02"]


def test_group_query_filters_and_threshold(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    query = points[PER_BLOB + 4].vector  # a bag
    bags = PayloadFilter(must=[MatchCondition(key="category", value="bags")])
    scores = sorted(cosines(points, query).values(), reverse=True)
    threshold = (scores[9] + scores[10]) / 2

    by_brand = all_pages(settings, store, vector=query, group_by="brand", group_size=3, filter=bags)
    above = all_pages(
        settings, store, vector=query, group_by="shelf", group_size=10, score_threshold=threshold
    )

    assert sorted(str(g.key) for g in groups_of(by_brand)) == sorted(BRANDS)
    assert {hit.payload["category"] for g in groups_of(by_brand) for hit in g.hits} == {"bags"}
    assert len([hit for g in groups_of(above) for hit in g.hits]) == 10
    assert min(hit.score for g in groups_of(above) for hit in g.hits) >= threshold


def test_integer_group_keys_page_too(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    pages = all_pages(settings, store, vector=points[1].vector, group_by="shelf", limit=2)

    assert [len(page.groups) for page in pages] == [2, 2, 1]
    assert sorted(int(g.key) for g in groups_of(pages)) == [0, 1, 2, 3, 4]
    assert all(isinstance(g.key, int) for g in groups_of(pages))


def test_later_pages_may_change_limit_and_group_size(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    base = {"model_id": MODEL_ID, "vector": points[2].vector, "group_by": "product_id"}
    everything = group_query(settings, store, GroupQuery.model_validate({**base, "limit": 100}))
    first = group_query(settings, store, GroupQuery.model_validate({**base, "limit": 3}))

    second = group_query(
        settings,
        store,
        GroupQuery.model_validate(
            {**base, "limit": 5, "group_size": 3, "cursor": first.next_cursor}
        ),
    )

    assert [g.key for g in first.groups + second.groups] == [g.key for g in everything.groups[:8]]
    assert everything.next_cursor is None


def cursor_body(cursor: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return body


def forge(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def test_cursor_is_bounded(
    settings: Settings,
    store: QdrantStore,
    points: list[NewPoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queries, "MAX_CURSOR_GROUPS", 6)
    base = {"model_id": MODEL_ID, "vector": points[0].vector, "group_by": "product_id"}
    first = group_query(settings, store, GroupQuery.model_validate({**base, "limit": 4}))
    assert first.next_cursor is not None
    assert cursor_body(first.next_cursor)["keys"] == [g.key for g in first.groups]

    # A second page of 4 would make the cursor hold 8 keys: paging stops, and says so.
    second = group_query(
        settings,
        store,
        GroupQuery.model_validate({**base, "limit": 4, "cursor": first.next_cursor}),
    )
    assert len(second.groups) == 4
    assert second.next_cursor is None
    assert second.cursor_limit_reached

    oversized = forge({**cursor_body(first.next_cursor), "keys": [f"k{i}" for i in range(7)]})
    with pytest.raises(ValueError, match="holds 7 groups, more than the 6"):
        group_query(settings, store, GroupQuery.model_validate({**base, "cursor": oversized}))


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "e30",  # {}
        forge({"v": 1, "q": "x", "keys": [1.5]}),
        forge({"v": 1, "q": "x", "keys": [True]}),
        forge({"v": 2, "q": "x", "keys": []}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_malformed_cursor_is_a_value_error(
    settings: Settings, store: QdrantStore, points: list[NewPoint], cursor: str
) -> None:
    query = GroupQuery(model_id=MODEL_ID, vector=points[0].vector, group_by="brand", cursor=cursor)
    with pytest.raises(ValueError, match="invalid cursor: not a cursor this service issued"):
        group_query(settings, store, query)


def test_cursor_of_another_query_is_refused(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    base = {"model_id": MODEL_ID, "vector": points[0].vector, "group_by": "product_id", "limit": 2}
    cursor = group_query(settings, store, GroupQuery.model_validate(base)).next_cursor

    for change in (
        {"group_by": "brand"},
        {"vector": points[1].vector},
        {"filter": {"must": [{"kind": "match", "key": "brand", "value": "acme"}]}},
        {"score_threshold": 0.5},
    ):
        query = GroupQuery.model_validate({**base, **change, "cursor": cursor})
        with pytest.raises(ValueError, match="belongs to another query"):
            group_query(settings, store, query)


def test_group_query_needs_exactly_one_target(
    settings: Settings, store: QdrantStore, points: list[NewPoint]
) -> None:
    with pytest.raises(ValueError, match="needs an image, an item id or a vector"):
        group_query(settings, store, GroupQuery(model_id=MODEL_ID, group_by="brand"))
    with pytest.raises(ValueError, match="exactly one"):
        group_query(
            settings,
            store,
            GroupQuery(model_id=MODEL_ID, group_by="brand", item_id="shoes-01"),
            image=b"\x89PNG",
        )
    with pytest.raises(ValidationError, match="not both"):
        GroupQuery(model_id=MODEL_ID, group_by="brand", item_id="x", vector=points[0].vector)


def test_group_query_of_unknown_item(settings: Settings, store: QdrantStore) -> None:
    query = GroupQuery(model_id=MODEL_ID, group_by="brand", item_id="socks-01")
    with pytest.raises(ItemNotFound, match="socks-01"):
        group_query(settings, store, query)


@pytest.mark.parametrize(
    "fields",
    [
        {"group_size": 0},
        {"group_size": 11},
        {"limit": 0},
        {"limit": 101},
        {"group_by": ""},
        {"cursor": "x" * (MAX_CURSOR_CHARS + 1)},
        {"score_threshold": 1.5},
    ],
)
def test_group_query_bounds(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GroupQuery.model_validate({"model_id": MODEL_ID, "group_by": "brand", **fields})


# --- facets -------------------------------------------------------------------------------


def test_facets_equal_python_counts_under_a_filter(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    cheap_hats = PayloadFilter(
        must=[MatchCondition(key="category", value="hats"), RangeCondition(key="price", lte=10)],
        must_not=[MatchCondition(key="shelf", value=0)],
    )

    result = facet_counts(store, FacetQuery(model_id=MODEL_ID, key="brand", filter=cheap_hats))
    everything = facet_counts(store, FacetQuery(model_id=MODEL_ID, key="category"))

    expected = Counter(
        p.metadata["brand"]
        for p in points
        if p.metadata["category"] == "hats" and p.metadata["price"] <= 10 and p.metadata["shelf"]
    )
    assert result.key == "brand"
    assert {c.value: c.count for c in result.counts} == dict(expected)
    assert [c.count for c in result.counts] == sorted(expected.values(), reverse=True)
    assert {c.value: c.count for c in everything.counts} == {"shoes": 22, "bags": 21, "hats": 21}


def test_facet_limit_keeps_the_most_frequent(store: QdrantStore) -> None:
    result = facet_counts(store, FacetQuery(model_id=MODEL_ID, key="category", limit=1))
    assert [(c.value, c.count) for c in result.counts] == [("shoes", 22)]


# --- recommendations ----------------------------------------------------------------------


def recommend(store: QdrantStore, **fields: Any) -> list[ScoredPoint]:
    query = RecommendQuery.model_validate({"model_id": MODEL_ID, "limit": 100, **fields})
    return recommend_items(store, query)


def test_positive_item_ranks_its_blob_first_and_examples_are_left_out(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    hits = recommend(store, positive=["shoes-00"])  # two images

    assert "shoes-00" not in {hit.item_id for hit in hits}
    assert len(hits) == len(points) - 2
    assert {hit.payload["category"] for hit in hits[: PER_BLOB - 1]} == {"shoes"}
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_negative_item_pushes_its_blob_down(store: QdrantStore) -> None:
    without = recommend(store, positive=["shoes-05"])
    with_negative = recommend(store, positive=["shoes-05"], negative=["bags-03"])

    def categories(hits: list[ScoredPoint]) -> list[str]:
        return [str(hit.payload["category"]) for hit in hits]

    # Without the negative, bags and hats are equally unlike shoes and interleave.
    assert categories(without)[-PER_BLOB:] != ["bags"] * PER_BLOB
    assert categories(with_negative) == ["shoes"] * 21 + ["hats"] * 21 + ["bags"] * 20
    assert {"shoes-05", "bags-03"}.isdisjoint(hit.item_id for hit in with_negative)


def test_recommendation_filters_apply(store: QdrantStore, points: list[NewPoint]) -> None:
    acme_hats = PayloadFilter(
        must=[
            MatchCondition(key="brand", value="acme"),
            MatchCondition(key="category", value="hats"),
        ]
    )

    hits = recommend(store, positive=["hats-04", "shoes-03"], filter=acme_hats)

    expected = {
        p.item_id
        for p in points
        if p.metadata["brand"] == "acme" and p.metadata["category"] == "hats"
    } - {"hats-04"}
    assert {hit.item_id for hit in hits} == expected


def test_recommendation_pages_with_offset(store: QdrantStore) -> None:
    everything = recommend(store, positive=["bags-01"], negative=["hats-02"])
    page = recommend(store, positive=["bags-01"], negative=["hats-02"], limit=5, offset=10)
    assert [hit.id for hit in page] == [hit.id for hit in everything[10:15]]


def test_recommendation_strategy_is_used(store: QdrantStore) -> None:
    # sum_scores adds one cosine per positive: near-duplicates of both score close to 2.
    hits = recommend(store, positive=["shoes-01", "shoes-02"], strategy="sum_scores", limit=1)
    assert hits[0].score > 1.5


def test_recommendation_of_unknown_item(store: QdrantStore) -> None:
    with pytest.raises(ItemNotFound, match="socks-01"):
        recommend(store, positive=["shoes-01"], negative=["socks-01"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"positive": []}, "at least 1 item"),
        ({"positive": ["a", "b"], "negative": ["b"]}, "both positive and negative"),
        ({"positive": ["a"], "strategy": "median"}, "average_vector"),
        ({"positive": ["a"], "limit": 0}, "greater than or equal to 1"),
    ],
)
def test_recommend_query_bounds(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RecommendQuery.model_validate({"model_id": MODEL_ID, **fields})


# --- through the real test model ----------------------------------------------------------


@pytest.fixture
def catalog(settings: Settings, tmp_path: Path) -> Iterator[tuple[VectorStore, Path]]:
    """The standard test catalog embedded with the test model, in a local-mode store."""
    images = tmp_path / "images"
    rows = [catalog_row(i) for i in range(CATALOG_SIZE)]
    for index, row in enumerate(rows):
        write_picture(images / row["image"], index)
    csv_path = write_csv(tmp_path / "catalog.csv", rows)
    store = open_store(settings)
    runtime = load_runtime(settings, TEST_MODEL_ID)
    summary = BulkIngestor(store, [runtime], settings.images).run(
        catalog_sources(csv_path, images), progress=False
    )
    assert (summary.ingested, summary.failed) == (CATALOG_SIZE, 0)
    yield store, images
    store.close()


def test_real_model_groups_and_recommendations(
    settings: Settings, catalog: tuple[VectorStore, Path]
) -> None:
    store, images = catalog
    image = (images / catalog_row(3)["image"]).read_bytes()
    ungrouped = run_query(
        settings, store, SimilarityQuery(model_id=TEST_MODEL_ID, limit=100), image=image
    )

    pages: list[GroupPage] = []
    cursor: str | None = None
    while not pages or cursor is not None:
        query = GroupQuery(model_id=TEST_MODEL_ID, group_by="product_id", limit=2, cursor=cursor)
        pages.append(group_query(settings, store, query, image=image))
        cursor = pages[-1].next_cursor

    best_per_product: dict[str, ScoredPoint] = {}
    for hit in ungrouped:
        best_per_product.setdefault(str(hit.payload["product_id"]), hit)
    groups = groups_of(pages)
    assert [len(page.groups) for page in pages] == [2, 2, 2]
    assert [g.hits[0].id for g in groups] == [hit.id for hit in best_per_product.values()]
    assert groups[0].hits[0].item_id == "sku-03"

    # One positive example and no negative: the same ranking as "more like this item".
    recommended = recommend_items(
        store, RecommendQuery(model_id=TEST_MODEL_ID, positive=["sku-03"], limit=100)
    )
    similar = run_query(
        settings, store, SimilarityQuery(model_id=TEST_MODEL_ID, item_id="sku-03", limit=100)
    )
    assert [hit.id for hit in recommended] == [hit.id for hit in similar]
    assert len(recommended) == CATALOG_SIZE - 1
