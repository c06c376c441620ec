"""Congruence: the same scenarios against two backends must give the same answers.

The reference is ``QdrantStore`` on qdrant-client's local mode (in memory); the candidates
are ``EdgeStore`` (qdrant-edge, exact search) and, when ``LOOKALIKE_TEST_QDRANT_URL`` names
one, a real Qdrant server. Every answer is compared in full: ids, order, scores (within
1e-5), payloads (but ``ingested_at``, which is each store's own clock), group keys, facet
counts, scroll offsets, error types and messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel
from qdrant_client import QdrantClient

from ingest.errors import StoreError
from ingest.store.base import VectorStore, point_id
from ingest.store.edge import EdgeStore
from ingest.store.qdrant import MEMORY, QdrantStore
from schemas.models import ModelManifest, ModelSpec
from schemas.points import (
    AnyOfCondition,
    MatchCondition,
    NewPoint,
    PayloadFilter,
    RangeCondition,
)
from schemas.settings import DEFAULT_PAYLOAD_INDEXES

SERVER_URL_VARIABLE = "LOOKALIKE_TEST_QDRANT_URL"
DIM = 16
MODEL_ID = "congruence-model"
OTHER_MODEL_ID = "congruence-other"
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli")
CATEGORIES = ("shoes", "bags", "hats")
TAGS = ("sale", "new", "eco", "limited")
PAYLOAD_INDEXES = (*DEFAULT_PAYLOAD_INDEXES, "tags")
TOLERANCE = 1e-5


def manifest(model_id: str = MODEL_ID, sha: str = "ab" * 32, dimension: int = DIM) -> ModelManifest:
    return ModelManifest(
        spec=ModelSpec(id=model_id, family="custom", dimension=dimension), sha256=sha, source="test"
    )


def clustered_catalog(n: int = 300, clusters: int = 8, seed: int = 11) -> list[NewPoint]:
    """Seeded clustered unit vectors; products of 1-4 images; some points lack a brand,
    some have several tags, a few have a tag list no group can take (a boolean in it)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM))
    points = []
    product = 0
    for i in range(n):
        cluster = int(rng.integers(clusters))
        vector = centres[cluster] + 0.45 * rng.normal(size=DIM)
        if i and rng.random() < 0.4:
            product += 1
        metadata: dict[str, Any] = {
            "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
            "price": round(float(rng.uniform(1, 100)), 2),
            "product_id": f"p{product:03d}",
            "cluster": cluster,
        }
        if i % 37 != 5:  # a few points without a brand: they join no brand group
            metadata["brand"] = BRANDS[(cluster + int(rng.integers(2))) % len(BRANDS)]
        if i % 3 == 0:
            metadata["tags"] = sorted({TAGS[int(rng.integers(len(TAGS)))] for _ in range(2)})
        if i % 61 == 7:
            metadata["tags"] = ["sale", True]
        points.append(
            NewPoint(
                item_id=f"item-{i:04d}",
                image_sha256=f"{i:064x}",
                vector=(vector / np.linalg.norm(vector)).tolist(),
                source_uri=f"file:///catalog/{i}.jpg",
                thumbnail_key=f"thumbs/{i}.webp",
                metadata=metadata,
            )
        )
    return points


POINTS = clustered_catalog()


def pid(index: int) -> str:
    return point_id(POINTS[index].item_id, POINTS[index].image_sha256)


def queries(n: int = 3, seed: int = 5) -> list[list[float]]:
    """Query vectors near the data (a stored vector plus noise), and one far from it."""
    rng = np.random.default_rng(seed)
    near = [np.array(POINTS[int(rng.integers(len(POINTS)))].vector) for _ in range(n)]
    vectors = [v + 0.3 * rng.normal(size=DIM) for v in near] + [rng.normal(size=DIM)]
    return [v.tolist() for v in vectors]


# --- backends -----------------------------------------------------------------------------


def fill(store: VectorStore) -> None:
    for start in range(0, len(POINTS), 64):
        store.upsert(manifest(), POINTS[start : start + 64])


@pytest.fixture
def prefix() -> str:
    # Unique per test, so that a shared server never mixes two tests' collections.
    return f"congruence-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def reference(prefix: str) -> Iterator[QdrantStore]:
    store = QdrantStore(
        QdrantClient(location=MEMORY), prefix=prefix, payload_indexes=PAYLOAD_INDEXES
    )
    yield store
    store.close()


def server_store(prefix: str) -> QdrantStore:
    url = os.environ.get(SERVER_URL_VARIABLE)
    if not url:
        pytest.skip(f"{SERVER_URL_VARIABLE} is not set: no Qdrant server to compare with")
    return QdrantStore(QdrantClient(url=url), prefix=prefix, payload_indexes=PAYLOAD_INDEXES)


@pytest.fixture(params=["edge", "server"])
def candidate(request: pytest.FixtureRequest, prefix: str, tmp_path: Path) -> Iterator[VectorStore]:
    store: EdgeStore | QdrantStore
    if request.param == "edge":
        # exact_below far above the data: exact search, as the local mode reference does.
        store = EdgeStore(
            tmp_path / "edge", prefix=prefix, payload_indexes=PAYLOAD_INDEXES, exact_below=10**9
        )
    else:
        store = server_store(prefix)
    yield store
    if isinstance(store, QdrantStore) and request.param == "server":
        for model_id in (MODEL_ID, OTHER_MODEL_ID):
            store.drop_collection(model_id)
    store.close()


@pytest.fixture
def stores(reference: QdrantStore, candidate: VectorStore) -> tuple[VectorStore, VectorStore]:
    fill(reference)
    fill(candidate)
    return reference, candidate


# --- comparing answers --------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Answers as plain data, without each store's own ingestion clock."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "ingested_at"}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _blocks(scores: list[float]) -> list[range]:
    """Runs of positions whose scores tie (within tolerance): their order is arbitrary."""
    blocks, start = [], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or abs(scores[i] - scores[i - 1]) > TOLERANCE:
            blocks.append(range(start, i))
            start = i
    return blocks


def assert_same(expected: Any, actual: Any, where: str = "answer") -> None:
    """Equal, floats within tolerance, and ranked lists equal up to the order of ties."""
    if isinstance(expected, float) or isinstance(actual, float):
        assert actual == pytest.approx(expected, abs=TOLERANCE), where
    elif isinstance(expected, dict) and isinstance(actual, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        assert len(actual) == len(expected), f"{where}: {len(actual)} != {len(expected)} items"
        ranked = [_rank_score(e) for e in expected]
        if expected and all(s is not None for s in ranked):
            for block in _blocks([float(s) for s in ranked if s is not None]):
                by_identity = {_identity(expected[i]): expected[i] for i in block}
                for i in block:
                    key = _identity(actual[i])
                    assert key in by_identity, f"{where}[{i}]: {key} not among {list(by_identity)}"
                    assert_same(by_identity[key], actual[i], f"{where}[{i}]")
        else:
            for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
                assert_same(e, a, f"{where}[{i}]")
    else:
        assert actual == expected, where


def _rank_score(item: Any) -> float | None:
    """The score a ranked item is ordered by: a hit's score, a group's best hit's."""
    if isinstance(item, dict) and isinstance(item.get("score"), float):
        return float(item["score"])
    if isinstance(item, dict) and isinstance(item.get("hits"), list) and item["hits"]:
        return _rank_score(item["hits"][0])
    return None


def _identity(item: dict[str, Any]) -> str:
    return str(item.get("id", item.get("key")))


def congruent(
    stores: tuple[VectorStore, VectorStore], scenario: Callable[[VectorStore], Any]
) -> Any:
    """Run a scenario on both stores, compare, and return the reference's answer."""
    reference, candidate = stores
    expected = plain(outcome(scenario, reference))
    assert_same(expected, plain(outcome(scenario, candidate)))
    return expected


def outcome(scenario: Callable[[VectorStore], Any], store: VectorStore) -> Any:
    """A scenario's answer, or the type and message of the StoreError/ValueError it raised."""
    try:
        return scenario(store)
    except (StoreError, ValueError) as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


# --- scenarios ----------------------------------------------------------------------------

FILTERS = {
    "none": None,
    "brand": PayloadFilter(must=[MatchCondition(key="brand", value="acme")]),
    "any_brand": PayloadFilter(must=[AnyOfCondition(key="brand", values=["globex", "hooli"])]),
    "price_range": PayloadFilter(must=[RangeCondition(key="price", gte=20, lt=45.5)]),
    "int_match": PayloadFilter(must=[MatchCondition(key="cluster", value=3)]),
    "int_any": PayloadFilter(must=[AnyOfCondition(key="cluster", values=[1, 2])]),
    "tag_in_list": PayloadFilter(must=[MatchCondition(key="tags", value="eco")]),
    "must_not": PayloadFilter(
        must=[MatchCondition(key="category", value="shoes")],
        must_not=[AnyOfCondition(key="brand", values=["acme", "initech"])],
    ),
    "not_expensive": PayloadFilter(must_not=[RangeCondition(key="price", gt=50)]),
    "float_pair": PayloadFilter.from_pairs({"price": POINTS[4].metadata["price"]}),
    "nothing": PayloadFilter(must=[MatchCondition(key="brand", value="nobody")]),
}


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_query_with_filters(stores: tuple[VectorStore, VectorStore], filter_name: str) -> None:
    payload_filter = FILTERS[filter_name]

    def scenario(store: VectorStore) -> Any:
        return {
            "hits": [
                store.query(MODEL_ID, vector=q, filter=payload_filter, limit=25) for q in queries()
            ],
            "count": store.count(MODEL_ID, filter=payload_filter),
        }

    answer = congruent(stores, scenario)
    if filter_name != "nothing":
        assert answer["hits"][0], "the scenario must find something"


def test_paging_offsets_and_thresholds(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        answers: list[Any] = []
        for q in queries():
            answers.append([store.query(MODEL_ID, vector=q, limit=7, offset=o) for o in (0, 7, 50)])
            answers.append(store.query(MODEL_ID, vector=q, limit=300, score_threshold=0.5))
            answers.append(
                store.query(
                    MODEL_ID,
                    vector=q,
                    limit=5,
                    offset=3,
                    score_threshold=0.2,
                    filter=FILTERS["brand"],
                )
            )
        answers.append(store.query(MODEL_ID, vector=queries()[0], limit=10, offset=len(POINTS)))
        return answers

    answer = congruent(stores, scenario)
    assert 1 < len(answer[1]) < len(POINTS)


def test_query_by_point_id(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        return [
            store.query(MODEL_ID, point_id=pid(17), limit=15),
            store.query(MODEL_ID, point_id=pid(42), filter=FILTERS["must_not"], limit=40),
            store.query(MODEL_ID, point_id=pid(99), limit=5, offset=5, score_threshold=0.1),
        ]

    answer = congruent(stores, scenario)
    assert pid(17) not in {hit["id"] for hit in answer[0]}


def test_query_batch(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        batch = queries(6)
        return {
            "batch": store.query_batch(MODEL_ID, batch, limit=12),
            "thresholded": store.query_batch(MODEL_ID, batch, limit=50, score_threshold=0.6),
            "singles": [store.query(MODEL_ID, vector=q, limit=12) for q in batch],
            "empty": store.query_batch(MODEL_ID, [], limit=3),
            "wrong_dimension": outcome(
                lambda s: s.query_batch(MODEL_ID, [batch[0], [0.1] * (DIM + 1)]), store
            ),
        }

    answer = congruent(stores, scenario)
    # One batched request answers what one query per vector would.
    assert_same(answer["singles"], answer["batch"])
    assert answer["wrong_dimension"]["raised"] == "CollectionMismatch"
    assert 0 < len(answer["thresholded"][0]) < 50


@pytest.mark.parametrize(
    ("group_by", "limit", "group_size"),
    [
        ("product_id", 8, 1),
        ("product_id", 10, 3),
        ("brand", 3, 2),
        ("brand", 10, 4),
        ("tags", 10, 5),  # a list joins several groups; a boolean in it joins none
        ("cluster", 4, 3),  # integer keys
        ("category", 2, 50),  # groups larger than what the first fetch holds
        ("nowhere", 5, 2),  # no point has the field
    ],
)
def test_groups(
    stores: tuple[VectorStore, VectorStore], group_by: str, limit: int, group_size: int
) -> None:
    def scenario(store: VectorStore) -> Any:
        answers = [
            store.query_groups(
                MODEL_ID, group_by=group_by, vector=q, limit=limit, group_size=group_size
            )
            for q in queries()
        ]
        answers.append(
            store.query_groups(
                MODEL_ID,
                group_by=group_by,
                point_id=pid(10),
                filter=FILTERS["not_expensive"],
                limit=limit,
                group_size=group_size,
                score_threshold=0.3,
            )
        )
        return answers

    answer = congruent(stores, scenario)
    if group_by != "nowhere":
        assert len(answer[0]) == min(limit, len(answer[0])) > 0


def test_facets(stores: tuple[VectorStore, VectorStore]) -> None:
    # Local mode also counts the boolean in a tag list; a server and the edge engine facet
    # over the keyword index, which holds strings only. Leave those few points out.
    boolean_tags = [p.item_id for p in POINTS if True in p.metadata.get("tags", [])]
    keyword_tags = PayloadFilter(must_not=[AnyOfCondition(key="item_id", values=boolean_tags)])

    def scenario(store: VectorStore) -> Any:
        return [
            store.facet(MODEL_ID, "brand"),
            store.facet(MODEL_ID, "category", filter=FILTERS["not_expensive"]),
            store.facet(MODEL_ID, "brand", limit=2),
            store.facet(MODEL_ID, "tags", filter=keyword_tags),
            store.facet(MODEL_ID, "brand", filter=FILTERS["nothing"]),
        ]

    answer = congruent(stores, scenario)
    assert [f["count"] for f in answer[0]] == sorted((f["count"] for f in answer[0]), reverse=True)


@pytest.mark.parametrize("strategy", ["average_vector", "best_score", "sum_scores"])
def test_recommend(stores: tuple[VectorStore, VectorStore], strategy: Any) -> None:
    def scenario(store: VectorStore) -> Any:
        def recommend(**kwargs: Any) -> Any:
            return store.recommend(MODEL_ID, strategy=strategy, **kwargs)

        return [
            recommend(positive=[pid(3)], limit=20),
            recommend(positive=[pid(3), pid(8)], negative=[pid(120)], limit=20),
            recommend(positive=[pid(3)], negative=[pid(120), pid(200)], limit=10, offset=5),
            recommend(positive=[pid(30)], negative=[pid(31)], filter=FILTERS["brand"], limit=50),
            recommend(positive=[pid(30), pid(30)], limit=5, score_threshold=0.4),
        ]

    congruent(stores, scenario)


def test_deletes(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        deleted = [
            store.delete_item(MODEL_ID, POINTS[12].item_id),
            store.delete_item(MODEL_ID, "nobody"),
            store.delete_points(MODEL_ID, [pid(1), pid(2), point_id("ghost", "0" * 64)]),
            store.delete_points(MODEL_ID, []),
        ]
        return {
            "deleted": deleted,
            "count": store.count(MODEL_ID),
            "retrieve": store.retrieve(MODEL_ID, [pid(1), pid(12), pid(13)]),
            "hits": store.query(MODEL_ID, vector=POINTS[1].vector, limit=10),
        }

    answer = congruent(stores, scenario)
    assert answer["deleted"] == [1, 0, 2, 0]


def test_payload_updates(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        updated = [
            store.update_item_payload(MODEL_ID, POINTS[20].item_id, {"brand": "newco", "x": 1}),
            store.update_item_payload(MODEL_ID, POINTS[21].item_id, {"item_id": "forged"}),
            store.update_item_payload(MODEL_ID, "nobody", {"brand": "newco"}),
        ]
        newco = PayloadFilter.from_pairs({"brand": "newco"})
        return {
            "updated": updated,
            "points": store.retrieve(MODEL_ID, [pid(20), pid(21)]),
            "hits": store.query(MODEL_ID, vector=POINTS[0].vector, filter=newco, limit=5),
            "facet": store.facet(MODEL_ID, "brand"),
        }

    answer = congruent(stores, scenario)
    assert answer["points"][0]["payload"]["brand"] == "newco"
    assert answer["points"][1]["item_id"] == POINTS[21].item_id


def test_scroll_paging(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        pages: list[Any] = []
        for payload_filter, with_vectors in ((None, False), (FILTERS["any_brand"], True)):
            offset: str | None = None
            while True:
                page, offset = store.scroll(
                    MODEL_ID,
                    filter=payload_filter,
                    limit=37,
                    offset=offset,
                    with_vectors=with_vectors,
                )
                pages.append({"page": page, "next": offset})
                if offset is None:
                    break
        pages.append(store.scroll(MODEL_ID, limit=3, offset=pid(77)))
        return pages

    answer = congruent(stores, scenario)
    ids = [p["id"] for page in answer[:9] for p in page["page"]]
    assert ids == sorted(ids)


def test_alias_switch_and_listing(stores: tuple[VectorStore, VectorStore]) -> None:
    other = manifest(OTHER_MODEL_ID, sha="cd" * 32, dimension=8)

    def scenario(store: VectorStore) -> Any:
        before = store.current_model()
        store.upsert(other, [p.model_copy(update={"vector": p.vector[:8]}) for p in POINTS[:5]])
        store.set_current(MODEL_ID)
        first = (store.current_model(), store.collections())
        store.set_current(OTHER_MODEL_ID)
        second = (store.current_model(), store.collections())
        outcomes = [outcome(lambda s: s.set_current("missing"), store), store.current_model()]
        dropped = store.drop_collection(OTHER_MODEL_ID)
        after_drop = store.current_model()
        # Rebuilt under the same name (what a reindex does): the old alias must not revive.
        store.upsert(other, [p.model_copy(update={"vector": p.vector[:8]}) for p in POINTS[:2]])
        rebuilt = (store.current_model(), store.collections())
        return [before, first, second, outcomes, dropped, after_drop, rebuilt]

    answer = congruent(stores, scenario)
    assert answer[1][0] == MODEL_ID
    assert answer[2][0] == OTHER_MODEL_ID
    assert answer[5] is None  # dropping the alias's collection drops the alias
    assert answer[6][0] is None


def test_refusals(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        [first] = POINTS[:1]
        cases: list[Callable[[VectorStore], Any]] = [
            lambda s: s.upsert(manifest(sha="ef" * 32), [first]),
            lambda s: s.ensure_collection(manifest(dimension=32)),
            lambda s: s.upsert(manifest(), [first.model_copy(update={"vector": [1.0] * 8})]),
            lambda s: s.query(MODEL_ID, vector=[1.0] * 8),
            lambda s: s.query("unknown-model", vector=[1.0] * DIM),
            lambda s: s.query(MODEL_ID, point_id=point_id("ghost", "0" * 64)),
            lambda s: s.query(MODEL_ID),
            lambda s: s.recommend(MODEL_ID, positive=[]),
            lambda s: s.recommend(MODEL_ID, positive=[pid(0)], negative=[point_id("g", "1")]),
            lambda s: s.count("unknown-model"),
            lambda s: s.drop_collection("unknown-model"),
        ]
        return [outcome(case, store) for case in cases] + [store.count(MODEL_ID)]

    answer = congruent(stores, scenario)
    assert answer[0]["raised"] == "CollectionMismatch"
    assert answer[-1] == len(POINTS)


def test_writes_and_ids(stores: tuple[VectorStore, VectorStore]) -> None:
    def scenario(store: VectorStore) -> Any:
        again = store.upsert(manifest(), POINTS[:10])  # a redelivered batch overwrites
        other_image = POINTS[0].model_copy(update={"image_sha256": "f" * 64})
        added = store.upsert(manifest(), [other_image])
        return {
            "ids": again + added,
            "count": store.count(MODEL_ID),
            "item": store.count(
                MODEL_ID, filter=PayloadFilter.from_pairs({"item_id": "item-0000"})
            ),
            "retrieved": store.retrieve(MODEL_ID, [added[0], pid(0)], with_vectors=True),
            "empty": store.upsert(manifest(), []),
        }

    congruent(stores, scenario)
