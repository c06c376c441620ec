"""QdrantStore.recommend against qdrant-client local mode (RAM and disk) and unreachable servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from ingest.errors import ItemNotFound, StoreError, StoreUnavailable
from ingest.store.base import point_id
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import local_client
from schemas.models import ModelManifest, ModelSpec
from schemas.points import (
    MatchCondition,
    NewPoint,
    PayloadFilter,
    RangeCondition,
    ScoredPoint,
)

DIM = 16
MODEL_ID = "recommend-model"
PER_BLOB = 10
BLOBS = ("a", "b", "c")
MANIFEST = ModelManifest(
    spec=ModelSpec(id=MODEL_ID, family="custom", dimension=DIM), sha256="ef" * 32, source="test"
)


def blob_catalog(seed: int = 3) -> list[NewPoint]:
    """Three tight, mutually orthogonal blobs of unit vectors; payload says which blob."""
    rng = np.random.default_rng(seed)
    centres, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    points = []
    for b, blob in enumerate(BLOBS):
        for j in range(PER_BLOB):
            vector = centres[:, b] + 0.08 * rng.normal(size=DIM)
            i = b * PER_BLOB + j
            points.append(
                NewPoint(
                    item_id=f"{blob}-{j:02d}",
                    image_sha256=f"{i:064x}",
                    vector=(vector / np.linalg.norm(vector)).tolist(),
                    source_uri=f"file:///catalog/{i}.jpg",
                    metadata={"blob": blob, "price": float(j)},
                )
            )
    return points


def pid(point: NewPoint) -> str:
    return point_id(point.item_id, point.image_sha256)


def blob_of(hit_id: str, points: list[NewPoint]) -> str:
    return next(str(p.metadata["blob"]) for p in points if pid(p) == hit_id)


@pytest.fixture
def points() -> list[NewPoint]:
    return blob_catalog()


@pytest.fixture(params=["memory", "disk"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, points: list[NewPoint]
) -> Iterator[QdrantStore]:
    location = ":memory:" if request.param == "memory" else str(tmp_path / "qdrant")
    opened = QdrantStore(local_client(location))
    opened.upsert(MANIFEST, points)
    yield opened
    opened.close()


def test_positive_example_ranks_its_blob_first_and_is_left_out(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    example = pid(points[0])

    hits = store.recommend(MODEL_ID, positive=[example], limit=len(points))

    assert example not in {hit.id for hit in hits}
    assert len(hits) == len(points) - 1
    assert [blob_of(hit.id, points) for hit in hits[: PER_BLOB - 1]] == ["a"] * (PER_BLOB - 1)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_negative_example_pushes_its_blob_down(store: QdrantStore, points: list[NewPoint]) -> None:
    # Blobs b and c are equally unlike a positive in a; a negative in b sends b below c.
    positive = [pid(points[0])]
    negative = [pid(points[PER_BLOB])]

    without = store.recommend(MODEL_ID, positive=positive, limit=len(points))
    with_negative = store.recommend(
        MODEL_ID, positive=positive, negative=negative, limit=len(points)
    )

    def b_ranks(hits: list[ScoredPoint]) -> list[int]:
        return [rank for rank, hit in enumerate(hits) if blob_of(hit.id, points) == "b"]

    blobs = [blob_of(h.id, points) for h in with_negative]
    assert blobs == ["a"] * (PER_BLOB - 1) + ["c"] * PER_BLOB + ["b"] * (PER_BLOB - 1)
    assert np.mean(b_ranks(with_negative)) > np.mean(b_ranks(without)) + 2
    assert set(positive + negative).isdisjoint(h.id for h in with_negative)


def test_average_vector_scores_match_numpy(store: QdrantStore, points: list[NewPoint]) -> None:
    vectors = {pid(p): np.array(p.vector) for p in points}
    positive = [pid(points[0]), pid(points[2])]
    negative = [pid(points[PER_BLOB])]
    mean = np.mean([vectors[i] for i in positive], axis=0)
    query = 2 * mean - vectors[negative[0]]
    query /= np.linalg.norm(query)

    hits = store.recommend(MODEL_ID, positive=positive, negative=negative, limit=len(points))

    expected = sorted(
        ((i, float(v @ query)) for i, v in vectors.items() if i not in positive + negative),
        key=lambda pair: -pair[1],
    )
    assert [h.id for h in hits] == [i for i, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_sum_scores_strategy_adds_cosines(store: QdrantStore, points: list[NewPoint]) -> None:
    vectors = {pid(p): np.array(p.vector) for p in points}
    positive = [pid(points[0]), pid(points[PER_BLOB])]
    negative = [pid(points[2 * PER_BLOB])]

    hits = store.recommend(
        MODEL_ID, positive=positive, negative=negative, limit=5, strategy="sum_scores"
    )

    def expected(i: str) -> float:
        v = vectors[i]
        return float(sum(v @ vectors[p] for p in positive) - v @ vectors[negative[0]])

    assert [h.score for h in hits] == pytest.approx([expected(h.id) for h in hits], abs=1e-4)
    best = sorted((i for i in vectors if i not in positive + negative), key=expected)[::-1]
    assert [h.id for h in hits] == best[:5]


def test_best_score_strategy_scores_points_nearer_a_negative_below_zero(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    vectors = {pid(p): np.array(p.vector) for p in points}
    positive = [pid(points[0])]
    negative = [pid(points[PER_BLOB])]

    hits = store.recommend(
        MODEL_ID, positive=positive, negative=negative, limit=len(points), strategy="best_score"
    )

    def nearer_negative(i: str) -> bool:
        return bool(vectors[i] @ vectors[negative[0]] >= vectors[i] @ vectors[positive[0]])

    assert {h.id for h in hits if h.score < 0} == {h.id for h in hits if nearer_negative(h.id)}
    assert {blob_of(h.id, points) for h in hits if h.score < 0} >= {"b"}
    assert [blob_of(h.id, points) for h in hits[: PER_BLOB - 1]] == ["a"] * (PER_BLOB - 1)
    assert [blob_of(h.id, points) for h in hits[-(PER_BLOB - 1) :]] == ["b"] * (PER_BLOB - 1)


def test_filters_apply(store: QdrantStore, points: list[NewPoint]) -> None:
    cheap_b = PayloadFilter(
        must=[MatchCondition(key="blob", value="b"), RangeCondition(key="price", lte=4)]
    )

    hits = store.recommend(MODEL_ID, positive=[pid(points[0])], filter=cheap_b, limit=100)

    assert {h.id for h in hits} == {pid(p) for p in points[PER_BLOB : PER_BLOB + 5]}


def test_limit_offset_and_threshold_page_the_ranking(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    positive = [pid(points[3])]
    everything = store.recommend(MODEL_ID, positive=positive, limit=len(points))

    second_page = store.recommend(MODEL_ID, positive=positive, limit=4, offset=4)
    threshold = (everything[5].score + everything[6].score) / 2
    above = store.recommend(MODEL_ID, positive=positive, limit=100, score_threshold=threshold)

    assert [h.id for h in second_page] == [h.id for h in everything[4:8]]
    assert [h.id for h in above] == [h.id for h in everything[:6]]


def test_asks_qdrant_for_a_recommend_query_that_excludes_the_examples(
    store: QdrantStore, points: list[NewPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Local mode drops the examples on its own; a server is told explicitly, so check the
    # request we send, not just the answer.
    sent: list[dict[str, Any]] = []
    real = store.client.query_points

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "query_points", spy)
    positive, negative = [pid(points[0])], [pid(points[PER_BLOB])]
    store.recommend(MODEL_ID, positive=positive, negative=negative, strategy="best_score")

    [request] = sent
    assert request["query"] == models.RecommendQuery(
        recommend=models.RecommendInput(
            positive=positive, negative=negative, strategy=models.RecommendStrategy.BEST_SCORE
        )
    )
    assert request["query_filter"].must_not == [models.HasIdCondition(has_id=positive + negative)]


def test_unknown_example_is_item_not_found(store: QdrantStore, points: list[NewPoint]) -> None:
    ghost = point_id("ghost", "0" * 64)
    with pytest.raises(ItemNotFound, match=ghost):
        store.recommend(MODEL_ID, positive=[pid(points[0])], negative=[ghost])


def test_needs_a_positive_example(store: QdrantStore, points: list[NewPoint]) -> None:
    with pytest.raises(ValueError, match="at least one positive"):
        store.recommend(MODEL_ID, positive=[], negative=[pid(points[0])])


def test_unknown_model_is_a_store_error(store: QdrantStore, points: list[NewPoint]) -> None:
    with pytest.raises(StoreError, match="no collection for model 'other'"):
        store.recommend("other", positive=[pid(points[0])])


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    store = QdrantStore(
        QdrantClient(url=f"http://127.0.0.1:{port}", timeout=1, check_compatibility=False)
    )
    with pytest.raises(StoreUnavailable, match="is unavailable"):
        store.recommend(MODEL_ID, positive=[point_id("a", "b")])
