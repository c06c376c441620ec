"""Clustering of stored vectors: k-means and HDBSCAN on synthetic blobs in local-mode Qdrant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient
from sklearn.metrics import adjusted_rand_score

from ingest.store.base import point_id
from ingest.store.qdrant import QdrantStore
from schemas.models import ModelManifest, ModelSpec
from schemas.points import AnyOfCondition, MatchCondition, NewPoint, PayloadFilter
from schemas.queries import MAX_CLUSTER_POINTS, ClusterMember, ClusterQuery, ClusterResult
from search_api.queries.clusters import cluster_items
from search_api.queries.refusals import TooManyPoints

DIM = 32
MODEL_ID = "blobs"
CATEGORIES = ("shoes", "bags", "hats")
PER_BLOB = 20
MANIFEST = ModelManifest(
    spec=ModelSpec(id=MODEL_ID, family="custom", dimension=DIM), sha256="34" * 32, source="test"
)
NOT_OUTLIER = PayloadFilter(must_not=[MatchCondition(key="category", value="misc")])


def blob_catalog(seed: int = 5) -> list[NewPoint]:
    """Three tight orthogonal blobs of unit vectors, plus one outlier orthogonal to all three."""
    rng = np.random.default_rng(seed)
    centres, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    points = []
    for b, category in enumerate(CATEGORIES):
        for j in range(PER_BLOB):
            vector = centres[:, b] + 0.1 * rng.normal(size=DIM)
            points.append(
                NewPoint(
                    item_id=f"{category}-{j:02d}",
                    image_sha256=f"{b * 100 + j:064x}",
                    vector=(vector / np.linalg.norm(vector)).tolist(),
                    source_uri=f"file:///catalog/{category}/{j}.jpg",
                    thumbnail_key=f"thumbs/{category}-{j:02d}.webp",
                    metadata={"category": category, "price": float(j)},
                )
            )
    outlier = NewPoint(
        item_id="odd-one",
        image_sha256="e" * 64,
        vector=centres[:, 3].tolist(),
        source_uri="file:///catalog/odd.jpg",
        metadata={"category": "misc", "price": 1.0},
    )
    return [*points, outlier]


def pid(point: NewPoint) -> str:
    return point_id(point.item_id, point.image_sha256)


def open_store(points: list[NewPoint]) -> QdrantStore:
    store = QdrantStore(QdrantClient(location=":memory:"))
    store.upsert(MANIFEST, points)
    return store


@pytest.fixture(scope="module")
def points() -> list[NewPoint]:
    return blob_catalog()


@pytest.fixture(scope="module")
def store(points: list[NewPoint]) -> Iterator[QdrantStore]:
    # Read-only for every test here, so one store serves the whole module.
    opened = open_store(points)
    yield opened
    opened.close()


def cluster(store: QdrantStore, **fields: Any) -> ClusterResult:
    return cluster_items(store, ClusterQuery.model_validate({"model_id": MODEL_ID, **fields}))


def category_by_point(points: list[NewPoint]) -> dict[str, str]:
    return {pid(p): str(p.metadata["category"]) for p in points}


def agreement(result: ClusterResult, points: list[NewPoint]) -> float:
    """Adjusted Rand index between the clusters found and the blobs (noise left out)."""
    truth = category_by_point(points)
    pairs = [(truth[m.point_id], c.id) for c in result.clusters for m in c.members]
    return float(adjusted_rand_score([t for t, _ in pairs], [c for _, c in pairs]))


def test_kmeans_recovers_the_blobs(store: QdrantStore, points: list[NewPoint]) -> None:
    result = cluster(store, method="kmeans", k=3, filter=NOT_OUTLIER.model_dump())

    assert result.points == 3 * PER_BLOB
    assert [c.size for c in result.clusters] == [PER_BLOB] * 3
    assert [c.id for c in result.clusters] == [0, 1, 2]
    assert agreement(result, points) == 1.0
    assert result.noise == []


def test_kmeans_with_more_clusters_than_blobs_splits_rather_than_merges(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    result = cluster(store, method="kmeans", k=6, filter=NOT_OUTLIER.model_dump())

    truth = category_by_point(points)
    assert all(len({truth[m.point_id] for m in c.members}) == 1 for c in result.clusters)
    assert len(result.clusters) == 6


@pytest.mark.parametrize("method", ["kmeans", "hdbscan"])
def test_representative_is_the_member_closest_to_the_centroid(
    store: QdrantStore, points: list[NewPoint], method: str
) -> None:
    vectors = {pid(p): np.array(p.vector) for p in points}

    result = cluster(store, method=method, k=3, min_cluster_size=5)

    assert result.clusters
    for c in result.clusters:
        ids = [m.point_id for m in c.members]
        centroid = np.mean([vectors[i] for i in ids], axis=0)
        distance = {i: float(np.linalg.norm(vectors[i] - centroid)) for i in ids}
        assert c.representative_point_id in ids
        assert c.representative_point_id == min(ids, key=distance.__getitem__)
        assert c.representative_item_id == c.members[0].item_id
        assert c.members[0].point_id == c.representative_point_id
        cosine = {i: float(vectors[i] @ centroid / np.linalg.norm(centroid)) for i in ids}
        assert [m.similarity for m in c.members] == pytest.approx([cosine[i] for i in ids])
        assert ids == sorted(ids, key=lambda i: -cosine[i])


def test_hdbscan_finds_the_blobs_and_marks_the_outlier_as_noise(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    result = cluster(store, method="hdbscan", min_cluster_size=5)

    assert result.points == len(points)
    assert len(result.clusters) == 3
    assert "odd-one" in {m.item_id for m in result.noise}
    assert all(m.similarity is None for m in result.noise)
    # Density methods may shave a few fringe points off a blob; they must not mix blobs.
    assert sum(c.size for c in result.clusters) >= 3 * PER_BLOB - 3
    assert agreement(result, points) == 1.0
    clustered = {m.point_id for c in result.clusters for m in c.members}
    assert clustered.isdisjoint(m.point_id for m in result.noise)
    assert len(clustered) + len(result.noise) == len(points)


def test_hdbscan_min_cluster_size_above_a_blob_leaves_only_noise(store: QdrantStore) -> None:
    result = cluster(store, method="hdbscan", min_cluster_size=61)

    assert result.clusters == []
    assert len(result.noise) == 61


def test_filter_selects_the_points_clustered(store: QdrantStore, points: list[NewPoint]) -> None:
    two = PayloadFilter(must=[AnyOfCondition(key="category", values=["shoes", "hats"])])

    result = cluster(store, method="kmeans", k=2, filter=two.model_dump())

    truth = category_by_point(points)
    assert sorted({truth[m.point_id] for m in c.members}.pop() for c in result.clusters) == [
        "hats",
        "shoes",
    ]
    assert agreement(result, points) == 1.0


def test_too_many_points_is_refused_before_any_vector_is_read(
    store: QdrantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    scrolled: list[dict[str, Any]] = []
    real_scroll = store.scroll

    def spy(*args: Any, **kwargs: Any) -> Any:
        scrolled.append(kwargs)
        return real_scroll(*args, **kwargs)

    monkeypatch.setattr(store, "scroll", spy)

    with pytest.raises(TooManyPoints, match="61 points match the filter, more than the 60") as err:
        cluster(store, max_points=60)

    assert isinstance(err.value, ValueError)
    assert (err.value.count, err.value.max_points) == (61, 60)
    assert scrolled == []
    assert cluster(store, max_points=61).points == 61
    assert scrolled
    assert all(call["with_vectors"] for call in scrolled)


def test_points_arriving_after_the_count_still_respect_the_bound(
    points: list[NewPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(points)
    try:
        # The count said 10; then the catalog grew before the vectors were read.
        monkeypatch.setattr(store, "count", lambda *args, **kwargs: 10)
        with pytest.raises(TooManyPoints, match="61 points"):
            cluster(store, max_points=10)
    finally:
        store.close()


def test_projection_gives_every_point_a_place_on_the_map(
    store: QdrantStore, points: list[NewPoint]
) -> None:
    result = cluster(store, method="hdbscan", min_cluster_size=5)

    everyone: list[ClusterMember] = [m for c in result.clusters for m in c.members]
    everyone += result.noise
    assert len(everyone) == len(points)
    assert all(np.isfinite([m.x, m.y]).all() for m in everyone)
    first, second = result.explained_variance
    assert 0 < second <= first <= 1
    assert first + second <= 1 + 1e-9
    # Three orthogonal blobs span a plane through their mean: PCA keeps them apart.
    centres = {c.id: np.mean([[m.x, m.y] for m in c.members], axis=0) for c in result.clusters}
    for c in result.clusters:
        for m in c.members:
            nearest = min(centres, key=lambda i: float(np.linalg.norm(centres[i] - [m.x, m.y])))
            assert nearest == c.id


def test_members_carry_the_requested_payload_fields(store: QdrantStore) -> None:
    default = cluster(store, k=3, filter=NOT_OUTLIER.model_dump())
    chosen = cluster(
        store, k=3, filter=NOT_OUTLIER.model_dump(), payload_fields=["category", "absent"]
    )

    member = default.clusters[0].members[0]
    assert member.payload == {"thumbnail_key": f"thumbs/{member.item_id}.webp"}
    assert {m.payload["category"] for c in chosen.clusters for m in c.members} == set(CATEGORIES)
    assert all(set(m.payload) == {"category"} for c in chosen.clusters for m in c.members)


@pytest.mark.parametrize("method", ["kmeans", "hdbscan"])
def test_clustering_is_deterministic(
    store: QdrantStore, points: list[NewPoint], method: str
) -> None:
    fields = {"method": method, "k": 4, "min_cluster_size": 4}
    reversed_store = open_store(points[::-1])
    try:
        first = cluster(store, **fields)
        second = cluster(store, **fields)
        other_insertion_order = cluster(reversed_store, **fields)
    finally:
        reversed_store.close()

    assert first.model_dump() == second.model_dump()
    assert first.model_dump() == other_insertion_order.model_dump()


def test_small_and_empty_selections(store: QdrantStore) -> None:
    nothing = PayloadFilter(must=[MatchCondition(key="category", value="socks")]).model_dump()
    single = PayloadFilter(must=[MatchCondition(key="category", value="misc")]).model_dump()

    assert cluster(store, filter=nothing) == ClusterResult(method="kmeans", points=0, clusters=[])
    with pytest.raises(ValueError, match="1 points cannot form 2 clusters"):
        cluster(store, filter=single, k=2)
    lonely = cluster(store, filter=single, method="hdbscan")
    assert [(m.item_id, m.x, m.y) for m in lonely.noise] == [("odd-one", 0.0, 0.0)]
    assert lonely.explained_variance == []


@pytest.mark.parametrize(
    "fields",
    [
        {"k": 1},
        {"k": 51},
        {"min_cluster_size": 1},
        {"max_points": 0},
        {"max_points": MAX_CLUSTER_POINTS + 1},
        {"method": "dbscan"},
    ],
)
def test_cluster_query_bounds(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ClusterQuery.model_validate({"model_id": MODEL_ID, **fields})
