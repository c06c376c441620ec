"""Near-duplicates and duplicate groups on a real local-mode Qdrant, results on a real Redis."""

from __future__ import annotations

import io
import itertools
import math
import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import redis
from PIL import Image
from qdrant_client import QdrantClient

from ingest.duplicates.groups import find_duplicate_groups, pair
from ingest.duplicates.jobs import run_duplicate_job
from ingest.duplicates.matches import item_near_duplicates, near_duplicates
from ingest.duplicates.thresholds import (
    calibrate_threshold,
    default_threshold,
    resolve_threshold,
)
from ingest.errors import StoreError
from ingest.images.decode import load_for_model
from ingest.ingestion.samples import VARIANTS
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import load_runtime
from ingest.state.duplicate_jobs import DuplicateJobNotFound, DuplicateResults
from ingest.store.qdrant import QdrantStore
from schemas.duplicates import (
    DuplicateGroup,
    DuplicateJobStatus,
    DuplicateLink,
    DuplicateMatch,
    DuplicatePoint,
)
from schemas.models import ModelFamily, ModelManifest, ModelSpec
from schemas.points import NewPoint, ScoredPoint
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from tests.ingest.catalog_samples import distinct_picture
from tests.support import TEST_MODEL_ID

DIM = 8
MODEL = "synthetic-8d"
THRESHOLD = 0.9


def manifest(model_id: str = MODEL, dimension: int = DIM) -> ModelManifest:
    """A model whose vectors the tests choose themselves."""
    spec = ModelSpec(id=model_id, family=ModelFamily.CUSTOM, dimension=dimension)
    return ModelManifest(spec=spec, sha256="0" * 64, source="test")


def along(degrees: float, axes: tuple[int, int] = (0, 1), dim: int = DIM) -> list[float]:
    """A unit vector at this angle in the plane of two axes: cosines are known exactly."""
    vector = [0.0] * dim
    vector[axes[0]] = math.cos(math.radians(degrees))
    vector[axes[1]] = math.sin(math.radians(degrees))
    return vector


def put(
    store: QdrantStore, vectors: dict[str, Sequence[float]], model: ModelManifest | None = None
) -> dict[str, str]:
    """Store one point per name (the name is its item id); returns name -> point id."""
    points = [
        NewPoint(
            item_id=name,
            image_sha256=f"{index:064x}",
            vector=list(vector),
            source_uri=f"file:///shop/{name}.jpg",
            metadata={"name": name},
        )
        for index, (name, vector) in enumerate(vectors.items())
    ]
    ids = store.upsert(model or manifest(), points)
    return dict(zip(vectors, ids, strict=True))


def names(group: DuplicateGroup, by_id: dict[str, str]) -> set[str]:
    """Names of every image in a group."""
    return {by_id[group.seed.point_id], *(by_id[m.point_id] for m in group.members)}


@pytest.fixture
def store() -> Iterator[QdrantStore]:
    opened = QdrantStore(QdrantClient(location=":memory:"))
    yield opened
    opened.close()


@pytest.fixture
def results(redis_server: EmbeddedRedis) -> DuplicateResults:
    return DuplicateResults(redis.Redis.from_url(redis_server.url), prefix="t", keep_jobs=3)


def tilted(degrees: float, tilt: float) -> list[float]:
    """``along(degrees)`` leaned out of its plane by ``tilt`` degrees (towards axis 2)."""
    vector = [math.cos(math.radians(tilt)) * x for x in along(degrees)]
    vector[2] = math.sin(math.radians(tilt))
    return vector


def test_a_chain_does_not_group_its_ends_unless_transitive(store: QdrantStore) -> None:
    # sim(A,B) = sim(B,C) = cos 15° ≈ 0.966 > 0.9 > sim(A,C) = cos 30° ≈ 0.866.
    ids = put(store, {"a": along(0), "b": along(15), "c": along(30)})
    by_id = {v: k for k, v in ids.items()}

    (group,) = find_duplicate_groups(store, MODEL, threshold=THRESHOLD)
    assert by_id[group.seed.point_id] == "b"  # the most connected point seeds
    assert len(group.members) == 1
    assert names(group, by_id) != {"a", "b", "c"}

    (chained,) = find_duplicate_groups(store, MODEL, threshold=THRESHOLD, transitive=True)
    assert names(chained, by_id) == {"a", "b", "c"}
    assert {frozenset((by_id[x.a], by_id[x.b])) for x in chained.links} == {
        frozenset("ab"),
        frozenset("bc"),
    }


def test_transitive_members_are_scored_against_the_seed(store: QdrantStore) -> None:
    # A chain a-b-c-d (13°, 14°, 15° apart; two steps > 25.8° = acos 0.9), and e, a
    # duplicate of b alone (sim 0.914; 0.890 to a, 0.886 to c), which makes b the seed.
    ids = put(
        store,
        {"a": along(0), "b": along(13), "c": along(27), "d": along(42), "e": tilted(13, 24)},
    )
    by_id = {v: k for k, v in ids.items()}
    (group,) = find_duplicate_groups(store, MODEL, threshold=THRESHOLD, transitive=True)
    assert by_id[group.seed.point_id] == "b"
    scores = {by_id[m.point_id]: m.score for m in group.members}
    # "d" is in the group through "c" only: its own score says it is no duplicate of "b".
    assert scores["a"] == pytest.approx(math.cos(math.radians(13)), abs=1e-5)
    assert scores["d"] == pytest.approx(math.cos(math.radians(29)), abs=1e-5)
    assert scores["d"] < THRESHOLD
    assert [m.score for m in group.members] == sorted(scores.values(), reverse=True)
    assert len(group.links) == 4

    # Without transitivity b keeps only a (c and e are no duplicates of a); c pairs with d.
    default = find_duplicate_groups(store, MODEL, threshold=THRESHOLD)
    assert sorted(sorted(names(g, by_id)) for g in default) == [["a", "b"], ["c", "d"]]


def clusters(count: int, size: int, dim: int, noise: float, seed: int) -> npt.NDArray[np.float64]:
    """``count`` random directions with ``size`` noisy copies each, unit length."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, dim))
    vectors = np.repeat(centres, size, axis=0) + rng.normal(scale=noise, size=(count * size, dim))
    normed: npt.NDArray[np.float64] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normed


def test_groups_match_brute_force_on_random_clusters(store: QdrantStore) -> None:
    # Noise wide enough that clusters are only partly duplicate: chains and cliques both occur.
    vectors = clusters(count=12, size=5, dim=DIM, noise=0.25, seed=7)
    names_ = [f"p{i:02d}" for i in range(len(vectors))]
    ids = put(store, dict(zip(names_, vectors.tolist(), strict=True)))
    row = {ids[name]: index for index, name in enumerate(names_)}
    sims = vectors @ vectors.T  # a brute-force reference is fine for 60 test points

    default = find_duplicate_groups(store, MODEL, threshold=THRESHOLD)
    seen: set[str] = set()
    for group in default:
        points = [group.seed.point_id, *(m.point_id for m in group.members)]
        assert seen.isdisjoint(points)
        seen.update(points)
        for a, b in itertools.combinations(points, 2):
            assert sims[row[a], row[b]] > THRESHOLD - 1e-6, "every pair must be a duplicate"
        for member in group.members:
            assert member.score == pytest.approx(
                sims[row[group.seed.point_id], row[member.point_id]], abs=1e-5
            )
    assert [g.size for g in default] == sorted((g.size for g in default), reverse=True)

    # Transitive groups are exactly the connected components of the thresholded graph.
    adjacency = (sims > THRESHOLD) & ~np.eye(len(vectors), dtype=bool)
    expected: list[set[int]] = []
    unvisited = set(range(len(vectors)))
    while unvisited:
        frontier = [unvisited.pop()]
        component = set(frontier)
        while frontier:
            for other in np.flatnonzero(adjacency[frontier.pop()]):
                if int(other) in unvisited:
                    unvisited.discard(int(other))
                    component.add(int(other))
                    frontier.append(int(other))
        if len(component) > 1:
            expected.append(component)
    transitive = find_duplicate_groups(store, MODEL, threshold=THRESHOLD, transitive=True)
    found = [
        {row[p] for p in (g.seed.point_id, *(m.point_id for m in g.members))} for g in transitive
    ]
    assert sorted(map(sorted, found)) == sorted(map(sorted, expected))
    assert any(len(c) > 2 for c in expected)
    assert len(default) > len(transitive)  # the chains the default refused to merge


def test_dismissed_pairs_are_not_edges(store: QdrantStore) -> None:
    ids = put(store, {"a": along(0), "b": along(10), "x": along(0, (2, 3))})
    hidden = {pair(ids["a"], ids["b"])}
    assert find_duplicate_groups(store, MODEL, threshold=THRESHOLD, hidden_pairs=hidden) == []
    assert (
        find_duplicate_groups(
            store, MODEL, threshold=THRESHOLD, transitive=True, hidden_pairs=hidden
        )
        == []
    )
    assert len(find_duplicate_groups(store, MODEL, threshold=THRESHOLD)) == 1


def test_near_duplicates_of_a_vector_a_point_and_an_item(store: QdrantStore) -> None:
    ids = put(
        store,
        {
            "a": along(0),
            "b": along(4),
            "c": along(10),
            "far": along(40),
            "other": along(0, (2, 3)),
        },
    )
    by_id = {v: k for k, v in ids.items()}

    def found(hits: list[ScoredPoint]) -> list[str]:
        return [by_id[hit.id] for hit in hits]

    assert found(near_duplicates(store, MODEL, vector=along(0), threshold=THRESHOLD)) == [
        "a",
        "b",
        "c",
    ]
    assert found(near_duplicates(store, MODEL, point_id=ids["a"], threshold=THRESHOLD)) == [
        "b",
        "c",
    ]
    assert found(
        near_duplicates(store, MODEL, vector=along(0), threshold=THRESHOLD, exclude_item_id="a")
    ) == ["b", "c"]
    # A dismissed pair is left out, and still `limit` answers come back when there are more.
    hidden = {pair(ids["a"], ids["b"])}
    assert found(
        near_duplicates(
            store, MODEL, point_id=ids["a"], threshold=THRESHOLD, limit=1, hidden=hidden
        )
    ) == ["c"]
    assert found(item_near_duplicates(store, MODEL, "b", threshold=THRESHOLD)) == ["a", "c"]
    assert item_near_duplicates(store, MODEL, "other", threshold=THRESHOLD) == []


def test_an_item_with_several_images_answers_for_each(store: QdrantStore) -> None:
    model = manifest()
    store.upsert(
        model,
        [
            NewPoint(item_id="shirt", image_sha256="1" * 64, vector=along(0), source_uri="f:1"),
            NewPoint(
                item_id="shirt", image_sha256="2" * 64, vector=along(0, (2, 3)), source_uri="f:2"
            ),
            NewPoint(item_id="front", image_sha256="3" * 64, vector=along(8), source_uri="f:3"),
            NewPoint(
                item_id="back", image_sha256="4" * 64, vector=along(12, (2, 3)), source_uri="f:4"
            ),
        ],
    )
    hits = item_near_duplicates(store, MODEL, "shirt", threshold=THRESHOLD)
    assert [hit.item_id for hit in hits] == ["front", "back"]  # its own images are left out


class CountingStore(QdrantStore):
    """The real store, recording every ANN query it is asked."""

    def __init__(self, client: QdrantClient) -> None:
        super().__init__(client)
        self.queries: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []

    def query(self, model_id: str, **kwargs: Any) -> list[ScoredPoint]:
        self.queries.append(kwargs)
        return super().query(model_id, **kwargs)

    def query_batch(
        self, model_id: str, vectors: Sequence[Sequence[float]], **kwargs: Any
    ) -> list[list[ScoredPoint]]:
        self.batches.append({"vectors": len(vectors), **kwargs})
        return super().query_batch(model_id, vectors, **kwargs)


def test_scan_is_one_bounded_batch_per_page_in_linear_memory() -> None:
    store = CountingStore(QdrantClient(location=":memory:"))
    points = 2000
    vectors = clusters(count=points // 4, size=4, dim=32, noise=0.05, seed=3)
    put(store, {f"p{i}": v for i, v in enumerate(vectors.tolist())}, manifest(MODEL, 32))
    progress: list[tuple[int, int]] = []

    tracemalloc.start()
    try:
        groups = find_duplicate_groups(
            store,
            MODEL,
            threshold=0.95,
            batch=256,
            max_neighbors=10,
            progress=lambda scanned, total: progress.append((scanned, total)),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()

    assert [g.size for g in groups] == [4] * (points // 4)
    # One batched request per scrolled page, one bounded search per point in it.
    assert not store.queries
    assert [b["vectors"] for b in store.batches] == [256] * (points // 256) + [points % 256]
    assert all(b["score_threshold"] == 0.95 and b["limit"] == 11 for b in store.batches)
    all_pairs_matrix = points * points * 4  # float32
    assert peak < all_pairs_matrix / 2, f"peak {peak / 1e6:.1f} MB"
    assert progress[0] == (0, points)
    assert progress[-1] == (points, points)
    assert [s for s, _ in progress] == sorted(s for s, _ in progress)
    assert len(progress) == 1 + math.ceil(points / 256)


def test_neighbour_cap_still_groups_a_crowd_of_identical_images(store: QdrantStore) -> None:
    put(store, {f"same{i}": along(0) for i in range(12)})
    groups = find_duplicate_groups(store, MODEL, threshold=THRESHOLD, max_neighbors=3)
    grouped = [p for g in groups for p in (g.seed.point_id, *(m.point_id for m in g.members))]
    # Ties come back in one order for every query, so each point's capped list names the same
    # few: those form the group, the rest wait for the next run (or use transitive groups).
    assert groups
    assert len(grouped) == len(set(grouped))
    transitive = find_duplicate_groups(
        store, MODEL, threshold=THRESHOLD, transitive=True, max_neighbors=3
    )
    assert [g.size for g in transitive] == [12]


def test_calibrate_threshold_rules() -> None:
    assert calibrate_threshold([0.97, 0.99], [0.5, 0.93]) == pytest.approx(0.95)
    # Overlap: 0.91 is the cut with fewest errors (the 0.9 duplicate is missed), not 0.85.
    assert calibrate_threshold([0.9, 0.95, 0.97], [0.8, 0.92]) == pytest.approx(0.935)
    assert calibrate_threshold([0.8, 0.95, 0.97], [0.85, 0.9]) == pytest.approx(0.925)
    with pytest.raises(ValueError, match="at least one"):
        calibrate_threshold([], [0.5])


def test_default_threshold_comes_from_the_model_spec(registry: ModelRegistry) -> None:
    assert default_threshold(registry, "dinov2-vits14") == 0.95
    assert default_threshold(registry, TEST_MODEL_ID) == 0.95
    assert resolve_threshold(registry, TEST_MODEL_ID, None) == 0.95
    assert resolve_threshold(registry, TEST_MODEL_ID, 0.8) == 0.8


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


PICTURES = 12


def test_calibrated_threshold_on_real_embeddings_groups_each_picture(
    settings: Settings, store: QdrantStore, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = load_runtime(settings, TEST_MODEL_ID)
    labels: list[tuple[int, str]] = []
    images: list[bytes] = []
    for index in range(PICTURES):
        picture = distinct_picture(index)
        labels.append((index, "original"))
        images.append(_jpeg(picture, 90))
        for name, make, quality in VARIANTS:
            labels.append((index, name))
            images.append(_jpeg(make(picture), quality))
    batch = np.stack(
        [load_for_model(data, runtime.preprocessing, settings.images) for data in images]
    )
    vectors = runtime.embedder.embed(batch)
    sims = vectors @ vectors.T
    same: list[float] = []
    different: list[float] = []
    for a, b in itertools.combinations(range(len(images)), 2):
        (same if labels[a][0] == labels[b][0] else different).append(float(sims[a, b]))

    threshold = calibrate_threshold(same, different)
    with capsys.disabled():
        print(
            f"\ncalibrated duplicate threshold of {TEST_MODEL_ID}: {threshold:.3f} "
            f"(lowest duplicate {min(same):.3f}, highest distinct {max(different):.3f})"
        )
    assert max(different) < threshold < min(same)

    names_ = [f"{index}-{name}" for index, name in labels]
    ids = put(store, dict(zip(names_, vectors.tolist(), strict=True)), runtime.manifest)
    by_id = {v: k for k, v in ids.items()}
    groups = find_duplicate_groups(store, TEST_MODEL_ID, threshold=threshold)
    assert len(groups) == PICTURES
    for group in groups:
        pictures = {name.split("-")[0] for name in names(group, by_id)}
        assert len(pictures) == 1
        assert group.size == 1 + len(VARIANTS)


# -- stored results -------------------------------------------------------------------------


def group(seed: str, *members: str, links: Sequence[tuple[str, str]] = ()) -> DuplicateGroup:
    """A hand-made group: members scored from 0.99 down."""
    return DuplicateGroup(
        group_id=seed,
        seed=DuplicatePoint(point_id=seed, item_id=f"item-{seed}"),
        members=[
            DuplicateMatch(point_id=m, item_id=f"item-{m}", score=0.99 - i / 100)
            for i, m in enumerate(members)
        ],
        links=[DuplicateLink(a=a, b=b, score=0.97) for a, b in links],
    )


def seeds(groups: Sequence[DuplicateGroup]) -> list[str]:
    return [g.seed.point_id for g in groups]


def test_job_lifecycle_and_latest_job_per_model(results: DuplicateResults) -> None:
    job = results.create_job(MODEL, threshold=0.93)
    assert job.status is DuplicateJobStatus.QUEUED
    assert results.job(job.job_id) == job
    running = results.start(job.job_id)
    assert running.status is DuplicateJobStatus.RUNNING
    assert running.started_at is not None
    results.progress(job.job_id, 40, 100)
    stored = results.job(job.job_id)
    assert stored is not None
    assert (stored.points_scanned, stored.points_total) == (40, 100)
    done = results.finish(job.job_id, [group("s1", "m1"), group("s2", "m2")])
    assert (done.status, done.groups) == (DuplicateJobStatus.DONE, 2)
    assert done.finished_at is not None

    newer = results.create_job(MODEL, threshold=0.9, transitive=True)
    assert results.latest_job(MODEL) == newer
    assert results.latest_job(MODEL, status=DuplicateJobStatus.DONE) == done
    assert results.latest_job("other-model") is None
    failed = results.fail(newer.job_id, "StoreError: boom")
    assert (failed.status, failed.error) == (DuplicateJobStatus.FAILED, "StoreError: boom")
    with pytest.raises(DuplicateJobNotFound):
        results.page("missing")


def test_only_the_newest_finished_jobs_are_kept(results: DuplicateResults) -> None:
    running = results.create_job(MODEL, threshold=0.9)
    results.start(running.job_id)
    finished = []
    for _ in range(4):
        job = results.create_job(MODEL, threshold=0.9)
        results.finish(job.job_id, [group("s", "m")])
        finished.append(job.job_id)
    results.create_job(MODEL, threshold=0.9)  # keep_jobs=3: the oldest finished ones go
    kept = {job.job_id for job in results.jobs(MODEL)}
    assert running.job_id in kept  # still writing its results
    assert finished[0] not in kept
    assert results.job(finished[0]) is None
    assert results.client.exists(f"t:duplicates:job:{finished[0]}:groups") == 0


def test_pages_keep_the_stored_order(results: DuplicateResults) -> None:
    job = results.create_job(MODEL, threshold=0.9)
    stored = [group(f"s{i}", f"m{i}") for i in range(7)]
    results.finish(job.job_id, stored)
    first = results.page(job.job_id, limit=3)
    assert (seeds(first.groups), first.next_offset, first.total) == (["s0", "s1", "s2"], 3, 7)
    second = results.page(job.job_id, offset=3, limit=3)
    assert (seeds(second.groups), second.next_offset) == (["s3", "s4", "s5"], 6)
    last = results.page(job.job_id, offset=6, limit=3)
    assert (seeds(last.groups), last.next_offset) == (["s6"], None)
    assert results.page(job.job_id, offset=9).groups == []


def test_a_page_of_an_unfinished_job_is_empty(results: DuplicateResults) -> None:
    job = results.create_job(MODEL, threshold=0.9)
    results.start(job.job_id)
    page = results.page(job.job_id)
    assert (page.groups, page.total, page.next_offset) == ([], 0, None)
    assert page.job.status is DuplicateJobStatus.RUNNING


def test_dismissed_pairs_disappear_from_stored_groups_at_once(results: DuplicateResults) -> None:
    job = results.create_job(MODEL, threshold=0.9)
    results.finish(job.job_id, [group("s0", "a", "b", "c"), group("s1", "x"), group("s2", "y")])

    assert results.mark_not_duplicate(MODEL, "b", "s0")
    assert not results.mark_not_duplicate(MODEL, "s0", "b")  # unordered: already hidden
    assert results.hidden_pairs(MODEL) == {frozenset({"s0", "b"})}
    assert results.hidden_pairs("other-model") == set()
    page = results.page(job.job_id)
    assert [m.point_id for m in page.groups[0].members] == ["a", "c"]

    # Two members dismissed from each other cannot both stay: the seed's closer one does.
    results.mark_not_duplicate(MODEL, "c", "a")
    assert [m.point_id for m in results.page(job.job_id).groups[0].members] == ["a"]

    # A group left with its seed alone is gone, and the page is still filled from later ones.
    results.mark_not_duplicate(MODEL, "s1", "x")
    page = results.page(job.job_id, limit=2)
    assert (seeds(page.groups), page.next_offset) == (["s0", "s2"], None)
    assert page.total == 3

    assert results.unmark_not_duplicate(MODEL, "x", "s1")
    assert seeds(results.page(job.job_id).groups) == ["s0", "s1", "s2"]
    with pytest.raises(ValueError, match="itself"):
        results.mark_not_duplicate(MODEL, "a", "a")


def test_dismissed_links_split_transitive_groups(results: DuplicateResults) -> None:
    job = results.create_job(MODEL, threshold=0.9, transitive=True)
    chain = group("b", "a", "c", "d", links=[("a", "b"), ("b", "c"), ("c", "d")])
    results.finish(job.job_id, [chain])
    results.mark_not_duplicate(MODEL, "c", "d")
    (visible,) = results.page(job.job_id).groups
    assert [m.point_id for m in visible.members] == ["a", "c"]
    assert {(link.a, link.b) for link in visible.links} == {("a", "b"), ("b", "c")}
    results.mark_not_duplicate(MODEL, "b", "c")
    (visible,) = results.page(job.job_id).groups
    assert [m.point_id for m in visible.members] == ["a"]
    results.mark_not_duplicate(MODEL, "a", "b")
    assert results.page(job.job_id).groups == []


def test_run_duplicate_job_stores_groups_and_honours_dismissals(
    store: QdrantStore, results: DuplicateResults
) -> None:
    ids = put(store, {"a": along(0), "b": along(5), "c": along(0, (2, 3)), "d": along(5, (2, 3))})
    results.mark_not_duplicate(MODEL, ids["c"], ids["d"])
    job = results.create_job(MODEL, threshold=THRESHOLD)
    done = run_duplicate_job(store, results, job.job_id, model_id=MODEL, threshold=THRESHOLD)
    assert (done.status, done.groups, done.points_scanned, done.points_total) == (
        DuplicateJobStatus.DONE,
        1,
        4,
        4,
    )
    (found,) = results.page(job.job_id).groups
    assert {found.seed.point_id, found.members[0].point_id} == {ids["a"], ids["b"]}
    assert found.seed.payload["name"] in {"a", "b"}
    # A redelivered message of a finished job does not scan again.
    store.drop_collection(MODEL)
    again = run_duplicate_job(store, results, job.job_id, model_id=MODEL, threshold=THRESHOLD)
    assert again == done


def test_run_duplicate_job_records_the_failure(
    store: QdrantStore, results: DuplicateResults
) -> None:
    with pytest.raises(StoreError, match="no collection"):
        run_duplicate_job(store, results, "j1", model_id=MODEL, threshold=THRESHOLD)
    job = results.job("j1")
    assert job is not None
    assert job.status is DuplicateJobStatus.FAILED
    assert job.error is not None
    assert job.error.startswith("CollectionNotFound: no collection")
