"""QdrantStore against real qdrant-client local mode (RAM and disk) and unreachable servers."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.common import client_warnings

from ingest.errors import (
    CollectionMismatch,
    CollectionNotFound,
    ItemNotFound,
    StoreError,
    StoreUnavailable,
)
from ingest.store import current
from ingest.store.base import point_id
from ingest.store.edge import EdgeStore
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_convert import to_qdrant_filter
from ingest.store.qdrant_local import local_client
from schemas.models import ModelManifest, ModelSpec
from schemas.points import (
    AnyOfCondition,
    MatchCondition,
    NewPoint,
    PayloadFilter,
    RangeCondition,
)
from schemas.settings import Settings

# from_settings keeps qdrant-client's server version check, which warns from a background
# thread when the (deliberately absent) server cannot be reached.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")

DIM = 16
MODEL_ID = "test-model"
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli")
CATEGORIES = ("shoes", "bags", "hats")


def manifest(sha: str = "ab" * 32, dimension: int = DIM, model_id: str = MODEL_ID) -> ModelManifest:
    return ModelManifest(
        spec=ModelSpec(id=model_id, family="custom", dimension=dimension), sha256=sha, source="test"
    )


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.normal(size=(n, dim))
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def catalog(n: int = 200, seed: int = 7) -> list[NewPoint]:
    """A synthetic catalog: 4 images per product, random brands, categories and prices."""
    rng = np.random.default_rng(seed)
    vectors = unit_vectors(rng, n)
    return [
        NewPoint(
            item_id=f"item-{i:04d}",
            image_sha256=f"{i:064x}",
            vector=vectors[i].tolist(),
            source_uri=f"file:///catalog/{i}.jpg",
            thumbnail_key=f"thumbs/{i}.webp",
            metadata={
                "brand": BRANDS[int(rng.integers(len(BRANDS)))],
                "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                "product_id": f"p{i // 4:03d}",
                "price": round(float(rng.uniform(1, 100)), 2),
            },
        )
        for i in range(n)
    ]


def cosine_ranking(points: list[NewPoint], query: np.ndarray) -> list[tuple[str, float]]:
    """Reference answer: (point id, cosine) of every point, best first, computed with numpy."""
    matrix = np.array([p.vector for p in points])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    scores = matrix @ (query / np.linalg.norm(query))
    order = np.argsort(-scores)
    return [(point_id(points[i].item_id, points[i].image_sha256), float(scores[i])) for i in order]


def ids_where(points: list[NewPoint], keep: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {point_id(p.item_id, p.image_sha256) for p in points if keep(p.metadata)}


def open_store(location: str) -> QdrantStore:
    return QdrantStore(local_client(location))


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantStore]:
    location = ":memory:" if request.param == "memory" else str(tmp_path / "qdrant")
    opened = open_store(location)
    yield opened
    opened.close()


@pytest.fixture
def points() -> list[NewPoint]:
    return catalog()


@pytest.fixture
def filled(store: QdrantStore, points: list[NewPoint]) -> QdrantStore:
    for start in range(0, len(points), 64):
        store.upsert(manifest(), points[start : start + 64])
    return store


# --- writes, ids and model fingerprints ---------------------------------------------------


def test_reupsert_of_same_item_and_image_overwrites(store: QdrantStore) -> None:
    [point] = catalog(1)
    first = store.upsert(manifest(), [point])
    second = store.upsert(manifest(), [point.model_copy(update={"metadata": {"brand": "new"}})])
    assert first == second == [point_id(point.item_id, point.image_sha256)]
    assert store.count(MODEL_ID) == 1
    [stored] = store.retrieve(MODEL_ID, first)
    assert stored.payload["brand"] == "new"


def test_same_item_with_another_image_adds_a_point(store: QdrantStore) -> None:
    [point] = catalog(1)
    other = point.model_copy(update={"image_sha256": "f" * 64})
    ids = store.upsert(manifest(), [point, other])
    assert len(set(ids)) == 2
    assert store.count(MODEL_ID) == 2
    assert store.count(MODEL_ID, filter=PayloadFilter.from_pairs({"item_id": point.item_id})) == 2


def test_payload_has_system_keys_that_metadata_cannot_override(store: QdrantStore) -> None:
    [point] = catalog(1)
    point.metadata.update({"item_id": "forged", "model_fingerprint": "forged", "color": "red"})
    [pid] = store.upsert(manifest(), [point])
    [stored] = store.retrieve(MODEL_ID, [pid], with_vectors=True)
    payload = stored.payload
    assert stored.item_id == payload["item_id"] == point.item_id
    assert payload["model_fingerprint"] == manifest().fingerprint
    assert payload["image_sha256"] == point.image_sha256
    assert payload["source_uri"] == point.source_uri
    assert payload["thumbnail_key"] == point.thumbnail_key
    assert payload["ingested_at"].endswith("+00:00")
    assert payload["color"] == "red"
    assert stored.vector is not None
    np.testing.assert_allclose(stored.vector, point.vector, atol=1e-6)


def test_collection_records_the_model(store: QdrantStore) -> None:
    info = store.ensure_collection(manifest())
    assert (info.name, info.model_id, info.dimension, info.points) == (
        "lookalike__test-model",
        MODEL_ID,
        DIM,
        0,
    )
    config = store.client.get_collection(info.name).config
    assert config.metadata == {
        "model_id": MODEL_ID,
        "model_fingerprint": manifest().fingerprint,
        "dimension": DIM,
        "schema_version": 1,
    }
    assert config.params.vectors == models.VectorParams(size=DIM, distance=models.Distance.COSINE)


def test_local_mode_index_warning_is_not_shown(
    store: QdrantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_warnings, "SEEN_MESSAGES", set())  # qdrant-client warns once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.ensure_collection(manifest())
    assert [str(w.message) for w in caught] == []


def test_other_model_file_is_refused(store: QdrantStore) -> None:
    store.upsert(manifest(), catalog(3))
    other = manifest(sha="cd" * 32)
    with pytest.raises(CollectionMismatch, match="reindex --to NEW_ID") as caught:
        store.upsert(other, catalog(1))
    assert manifest().fingerprint in str(caught.value)
    assert other.fingerprint in str(caught.value)
    assert store.count(MODEL_ID) == 3


def test_vector_of_wrong_length_is_refused_before_anything_is_created(store: QdrantStore) -> None:
    [point] = catalog(1)
    short = point.model_copy(update={"vector": point.vector[:8]})
    with pytest.raises(CollectionMismatch, match="reindex"):
        store.upsert(manifest(), [short])
    assert store.collections() == []


def test_manifest_with_another_dimension_is_refused(store: QdrantStore) -> None:
    store.ensure_collection(manifest())
    with pytest.raises(CollectionMismatch, match=r"16-d vectors.*32-d.*reindex"):
        store.ensure_collection(manifest(dimension=32))


def test_reopened_disk_store_remembers_the_model(tmp_path: Path) -> None:
    location = str(tmp_path / "qdrant")
    first = open_store(location)
    first.upsert(manifest(), catalog(5))
    first.close()

    reopened = open_store(location)
    try:
        assert reopened.count(MODEL_ID) == 5
        with pytest.raises(CollectionMismatch, match="reindex"):
            reopened.upsert(manifest(sha="cd" * 32), catalog(1))
        assert reopened.upsert(manifest(), catalog(1)) == [point_id("item-0000", f"{0:064x}")]
    finally:
        reopened.close()


def test_drop_collection(store: QdrantStore) -> None:
    store.upsert(manifest(), catalog(3))
    assert store.drop_collection(MODEL_ID) is True
    assert store.drop_collection(MODEL_ID) is False
    with pytest.raises(StoreError, match="ingest some images first"):
        store.count(MODEL_ID)
    # The dropped collection may be rebuilt by another model file (what reindex does).
    store.upsert(manifest(sha="cd" * 32), catalog(2))
    assert store.collections()[0].model_fingerprint == manifest(sha="cd" * 32).fingerprint


# --- queries ------------------------------------------------------------------------------


def test_query_by_vector_matches_numpy_ranking(filled: QdrantStore, points: list[NewPoint]) -> None:
    query = np.array(points[42].vector)
    hits = filled.query(MODEL_ID, vector=query.tolist(), limit=10)
    expected = cosine_ranking(points, query)[:10]
    assert [h.id for h in hits] == [pid for pid, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)
    assert hits[0].item_id == "item-0042"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_query_by_point_id_excludes_the_point(filled: QdrantStore, points: list[NewPoint]) -> None:
    pid = point_id(points[42].item_id, points[42].image_sha256)
    hits = filled.query(MODEL_ID, point_id=pid, limit=10)
    expected = cosine_ranking(points, np.array(points[42].vector))[1:11]
    assert pid not in {h.id for h in hits}
    assert [h.id for h in hits] == [p for p, _ in expected]


def test_query_by_point_id_honours_filters(filled: QdrantStore, points: list[NewPoint]) -> None:
    pid = point_id(points[42].item_id, points[42].image_sha256)
    brand = points[42].metadata["brand"]
    hits = filled.query(
        MODEL_ID, point_id=pid, filter=PayloadFilter.from_pairs({"brand": brand}), limit=200
    )
    assert {h.id for h in hits} == ids_where(points, lambda m: m["brand"] == brand) - {pid}


def test_query_by_point_id_asks_qdrant_to_exclude_it(
    filled: QdrantStore, points: list[NewPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Local mode drops the query point on its own; a server is told explicitly, so check the
    # request we send, not just the answer.
    sent: list[models.Filter | None] = []
    real = filled.client.query_points

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs.get("query_filter"))
        return real(*args, **kwargs)

    monkeypatch.setattr(filled.client, "query_points", spy)
    pid = point_id(points[1].item_id, points[1].image_sha256)
    filled.query(MODEL_ID, point_id=pid, filter=PayloadFilter.from_pairs({"brand": "acme"}))
    [query_filter] = sent
    assert query_filter is not None
    assert query_filter.must_not == [models.HasIdCondition(has_id=[pid])]
    assert query_filter.must == [
        models.FieldCondition(key="brand", match=models.MatchValue(value="acme"))
    ]


def test_query_by_unknown_point_id(filled: QdrantStore) -> None:
    with pytest.raises(ItemNotFound):
        filled.query(MODEL_ID, point_id=point_id("nobody", "0" * 64))


def test_query_needs_exactly_one_of_vector_or_point(filled: QdrantStore) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        filled.query(MODEL_ID)
    with pytest.raises(ValueError, match="exactly one"):
        filled.query(MODEL_ID, vector=[0.0] * DIM, point_id=point_id("a", "b"))


def test_query_vector_of_wrong_length(filled: QdrantStore) -> None:
    with pytest.raises(CollectionMismatch, match="8 dimensions"):
        filled.query(MODEL_ID, vector=[1.0] * 8)


def test_query_unknown_model(store: QdrantStore) -> None:
    with pytest.raises(StoreError, match="no collection for model 'nope'; ingest") as caught:
        store.query("nope", vector=[1.0] * DIM)
    assert type(caught.value) is CollectionNotFound


def test_pages_are_disjoint_and_consecutive(filled: QdrantStore, points: list[NewPoint]) -> None:
    query = unit_vectors(np.random.default_rng(1), 1)[0].tolist()
    pages = [filled.query(MODEL_ID, vector=query, limit=7, offset=o) for o in (0, 7, 14)]
    ids = [h.id for page in pages for h in page]
    assert len(ids) == len(set(ids)) == 21
    assert ids == [h.id for h in filled.query(MODEL_ID, vector=query, limit=21)]


def test_score_threshold(filled: QdrantStore, points: list[NewPoint]) -> None:
    query = np.array(points[3].vector)
    hits = filled.query(MODEL_ID, vector=query.tolist(), limit=200, score_threshold=0.3)
    expected = [pid for pid, score in cosine_ranking(points, query) if score >= 0.3]
    assert 1 < len(hits) < len(points)
    assert [h.id for h in hits] == expected
    assert min(h.score for h in hits) >= 0.3


FILTER_CASES: list[tuple[PayloadFilter, Callable[[dict[str, Any]], bool]]] = [
    (
        PayloadFilter(must=[MatchCondition(key="brand", value="acme")]),
        lambda m: m["brand"] == "acme",
    ),
    (
        PayloadFilter(must=[AnyOfCondition(key="brand", values=["globex", "hooli"])]),
        lambda m: m["brand"] in ("globex", "hooli"),
    ),
    (
        PayloadFilter(must=[RangeCondition(key="price", gte=20, lt=45.5)]),
        lambda m: 20 <= m["price"] < 45.5,
    ),
    (
        PayloadFilter(
            must=[MatchCondition(key="category", value="shoes")],
            must_not=[AnyOfCondition(key="brand", values=["acme", "initech"])],
        ),
        lambda m: m["category"] == "shoes" and m["brand"] not in ("acme", "initech"),
    ),
    (
        PayloadFilter(must_not=[RangeCondition(key="price", gt=50)]),
        lambda m: not m["price"] > 50,
    ),
]


@pytest.mark.parametrize(("payload_filter", "keep"), FILTER_CASES)
def test_filters(
    filled: QdrantStore,
    points: list[NewPoint],
    payload_filter: PayloadFilter,
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    expected = ids_where(points, keep)
    assert 0 < len(expected) < len(points)
    query = unit_vectors(np.random.default_rng(2), 1)[0].tolist()
    hits = filled.query(MODEL_ID, vector=query, filter=payload_filter, limit=len(points))
    assert {h.id for h in hits} == expected
    assert filled.count(MODEL_ID, filter=payload_filter) == len(expected)


def test_empty_filter_translates_to_none() -> None:
    assert to_qdrant_filter(None) is None
    assert to_qdrant_filter(PayloadFilter()) is None


def test_groups_one_hit_per_product(filled: QdrantStore, points: list[NewPoint]) -> None:
    query = np.array(points[10].vector)
    groups = filled.query_groups(
        MODEL_ID, group_by="product_id", vector=query.tolist(), limit=8, group_size=1
    )
    product = {point_id(p.item_id, p.image_sha256): p.metadata["product_id"] for p in points}
    best: dict[str, tuple[str, float]] = {}
    for pid, score in cosine_ranking(points, query):
        best.setdefault(product[pid], (pid, score))
    expected = sorted(best.items(), key=lambda kv: -kv[1][1])[:8]

    assert [g.key for g in groups] == [key for key, _ in expected]
    assert [[h.id for h in g.hits] for g in groups] == [[pid] for _, (pid, _) in expected]
    assert groups[0].key == "p002"
    assert groups[0].hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_groups_by_brand(filled: QdrantStore, points: list[NewPoint]) -> None:
    query = np.array(points[0].vector)
    groups = filled.query_groups(
        MODEL_ID, group_by="brand", vector=query.tolist(), limit=10, group_size=3
    )
    brand = {point_id(p.item_id, p.image_sha256): p.metadata["brand"] for p in points}
    assert sorted(str(g.key) for g in groups) == sorted(BRANDS)
    for group in groups:
        expected = [pid for pid, _ in cosine_ranking(points, query) if brand[pid] == group.key]
        assert [h.id for h in group.hits] == expected[:3]
    tops = [g.hits[0].score for g in groups]
    assert tops == sorted(tops, reverse=True)


def test_groups_by_point_id_exclude_the_point(filled: QdrantStore, points: list[NewPoint]) -> None:
    pid = point_id(points[10].item_id, points[10].image_sha256)
    groups = filled.query_groups(MODEL_ID, group_by="product_id", point_id=pid, limit=50)
    assert pid not in {h.id for g in groups for h in g.hits}


def test_facet_counts(filled: QdrantStore, points: list[NewPoint]) -> None:
    facets = filled.facet(MODEL_ID, "brand")
    assert {f.value: f.count for f in facets} == Counter(p.metadata["brand"] for p in points)
    counts = [f.count for f in facets]
    assert counts == sorted(counts, reverse=True)

    shoes = PayloadFilter.from_pairs({"category": "shoes"})
    facets = filled.facet(MODEL_ID, "brand", filter=shoes)
    expected = Counter(p.metadata["brand"] for p in points if p.metadata["category"] == "shoes")
    assert {f.value: f.count for f in facets} == expected
    assert len(filled.facet(MODEL_ID, "brand", limit=2)) == 2


# --- reads and deletes --------------------------------------------------------------------


def test_delete_item_removes_all_its_points(store: QdrantStore) -> None:
    [point] = catalog(1)
    images = [point.model_copy(update={"image_sha256": f"{k:064x}"}) for k in range(3)]
    store.upsert(manifest(), [*images, *catalog(5)[1:]])
    assert store.delete_item(MODEL_ID, point.item_id) == 3
    assert store.count(MODEL_ID) == 4
    assert store.count(MODEL_ID, filter=PayloadFilter.from_pairs({"item_id": point.item_id})) == 0
    assert store.delete_item(MODEL_ID, point.item_id) == 0


def test_retrieve(filled: QdrantStore, points: list[NewPoint]) -> None:
    wanted = [point_id(p.item_id, p.image_sha256) for p in (points[5], points[1])]
    missing = point_id("nobody", "0" * 64)
    found = filled.retrieve(MODEL_ID, [wanted[0], missing, wanted[1]])
    assert [p.id for p in found] == wanted
    assert [p.item_id for p in found] == ["item-0005", "item-0001"]
    assert found[0].vector is None
    assert filled.retrieve(MODEL_ID, [missing]) == []
    assert filled.retrieve(MODEL_ID, []) == []


def test_scroll_visits_every_point_once(filled: QdrantStore, points: list[NewPoint]) -> None:
    seen: list[str] = []
    offset: str | None = None
    pages = 0
    while True:
        page, offset = filled.scroll(MODEL_ID, limit=30, offset=offset)
        seen.extend(p.id for p in page)
        pages += 1
        if offset is None:
            break
    assert pages == 7
    assert len(seen) == len(set(seen)) == len(points)
    assert seen == sorted(seen)

    acme = PayloadFilter.from_pairs({"brand": "acme"})
    page, offset = filled.scroll(MODEL_ID, filter=acme, limit=len(points), with_vectors=True)
    assert offset is None
    assert {p.id for p in page} == ids_where(points, lambda m: m["brand"] == "acme")
    assert all(p.vector is not None and len(p.vector) == DIM for p in page)


def test_collections_lists_only_lookalike_collections(filled: QdrantStore) -> None:
    filled.client.create_collection(
        "someone_else", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    filled.client.create_collection(
        "lookalike__handmade", vectors_config=models.VectorParams(size=4, distance="Cosine")
    )
    other = QdrantStore(filled.client, prefix="staging")
    other.upsert(manifest(), catalog(2))

    [info] = filled.collections()
    assert info.model_dump() == {
        "name": "lookalike__test-model",
        "model_id": MODEL_ID,
        "dimension": DIM,
        "model_fingerprint": manifest().fingerprint,
        "points": 200,
        "current": False,
        # Local mode compares every vector: there is no index to report.
        "index": "exact",
        "indexed_vectors": 0,
    }
    assert [(c.name, c.points) for c in other.collections()] == [("staging__test-model", 2)]
    with pytest.raises(CollectionMismatch, match="not created by Lookalike"):
        filled.ensure_collection(manifest(model_id="handmade"))


# --- congruence: RAM and disk must answer identically ------------------------------------


def scenario(store: QdrantStore, points: list[NewPoint], *, write: bool) -> dict[str, Any]:
    """Everything a user can ask, as plain data (scores rounded to 5 decimals)."""
    if write:
        for start in range(0, len(points), 50):
            store.upsert(manifest(), points[start : start + 50])
        store.upsert(manifest(), points[:10])  # a redelivered batch
    rng = np.random.default_rng(3)
    queries = unit_vectors(rng, 3).tolist()
    cheap = PayloadFilter(must=[RangeCondition(key="price", lte=40)])
    not_acme = PayloadFilter(must_not=[MatchCondition(key="brand", value="acme")])

    def hits(found: list[Any]) -> list[tuple[str, float]]:
        return [(h.id, round(h.score, 5)) for h in found]

    result: dict[str, Any] = {
        "count": store.count(MODEL_ID),
        "count_cheap": store.count(MODEL_ID, filter=cheap),
        "facet": [(f.value, f.count) for f in store.facet(MODEL_ID, "brand")],
        "facet_not_acme": [
            (f.value, f.count) for f in store.facet(MODEL_ID, "category", filter=not_acme)
        ],
        "collections": [c.model_dump() for c in store.collections()],
    }
    for n, query in enumerate(queries):
        result[f"plain{n}"] = hits(store.query(MODEL_ID, vector=query, limit=15))
        result[f"page{n}"] = hits(store.query(MODEL_ID, vector=query, limit=5, offset=10))
        result[f"cheap{n}"] = hits(store.query(MODEL_ID, vector=query, filter=cheap, limit=15))
        result[f"threshold{n}"] = hits(
            store.query(MODEL_ID, vector=query, filter=not_acme, score_threshold=0.4, limit=50)
        )
        result[f"groups{n}"] = [
            (g.key, hits(g.hits))
            for g in store.query_groups(
                MODEL_ID, group_by="product_id", vector=query, limit=10, group_size=2
            )
        ]
    some = point_id(points[17].item_id, points[17].image_sha256)
    result["by_id"] = hits(store.query(MODEL_ID, point_id=some, limit=15))
    result["scroll"] = [p.id for p in store.scroll(MODEL_ID, limit=1000)[0]]
    return result


def test_memory_and_disk_are_congruent(tmp_path: Path, points: list[NewPoint]) -> None:
    memory = open_store(":memory:")
    disk = open_store(str(tmp_path / "qdrant"))
    try:
        expected = scenario(memory, points, write=True)
        assert scenario(disk, points, write=True) == expected
    finally:
        memory.close()
        disk.close()
    reopened = open_store(str(tmp_path / "qdrant"))
    try:
        assert scenario(reopened, points, write=False) == expected
    finally:
        reopened.close()
    assert expected["count"] == len(points)
    assert len(expected["groups0"]) == 10


# --- unavailable stores -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_store(url: str) -> QdrantStore:
    return QdrantStore(QdrantClient(url=url, timeout=1, check_compatibility=False))


def test_nothing_listening_is_unavailable() -> None:
    store = server_store(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailable, match=r"Qdrant at http://127\.0\.0\.1:\d+ is unavailable"):
        store.count(MODEL_ID)
    with pytest.raises(StoreUnavailable):
        store.upsert(manifest(), catalog(1))


def test_from_settings_uses_the_server_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = QdrantStore.from_settings(Settings(qdrant_url=url, collection_prefix="shop"))
    assert store.client.init_options["url"] == url
    assert store.prefix == "shop"
    with pytest.raises(StoreUnavailable, match="ConnectError"):
        store.collections()


def test_server_that_never_answers_is_unavailable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts connections; nobody ever reads or replies
        store = server_store(f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(StoreUnavailable, match="Timeout"):
            store.query("m", vector=[1.0])


@pytest.fixture
def http_status() -> Iterator[Callable[[int], str]]:
    """Start an HTTP server that answers every request with the given status; yields its URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"status": {"error": "stub"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_server_errors_are_unavailable(http_status: Callable[[int], str]) -> None:
    store = server_store(http_status(503))
    with pytest.raises(StoreUnavailable, match="503"):
        store.count(MODEL_ID)


def test_refused_requests_are_store_errors_but_not_unavailable(
    http_status: Callable[[int], str],
) -> None:
    store = server_store(http_status(403))
    with pytest.raises(StoreError, match=r"refused the request.*403") as caught:
        store.collections()
    assert not isinstance(caught.value, StoreUnavailable)


HOLD_LOCK = """
import sys
from qdrant_client import QdrantClient
client = QdrantClient(path=sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
client.close()
"""


def test_disk_store_open_in_another_process_is_unavailable(tmp_path: Path) -> None:
    location = str(tmp_path / "qdrant")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, location],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreUnavailable, match="already open in another process"):
            open_store(location)
    finally:
        holder.communicate(input="", timeout=30)
    # The lock dies with the process that held it.
    open_store(location).close()


def test_disk_store_open_twice_in_one_process_is_unavailable(tmp_path: Path) -> None:
    first = open_store(str(tmp_path / "qdrant"))
    try:
        with pytest.raises(StoreUnavailable, match="LOOKALIKE_QDRANT_URL"):
            open_store(str(tmp_path / "qdrant"))
    finally:
        first.close()


def test_settings_choose_the_embedded_store_unless_a_server_is_set(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    store = current.open_store(Settings(qdrant_url=None, data_dir=data_dir))
    try:
        assert isinstance(store, EdgeStore)
        store.upsert(manifest(), catalog(1))
        assert store.root == data_dir / "edge"
        assert (data_dir / "edge" / "owner.pid").is_file()
    finally:
        store.close()
    elsewhere = tmp_path / "store"
    store = current.open_store(Settings(data_dir=data_dir, store_path=elsewhere))
    try:
        assert isinstance(store, EdgeStore)
        assert store.root == elsewhere
    finally:
        store.close()
    # A client is made without connecting: nothing is asked of the server yet.
    server = current.open_store(Settings(data_dir=data_dir, qdrant_url="http://qdrant:6333"))
    assert isinstance(server, QdrantStore)
    assert server.client.init_options["url"] == "http://qdrant:6333"
