"""What the store benchmark measures on one store: loading, the query suite, index builds,
duplicate scans and recall. Every function takes a ``VectorStore`` (or ``EdgeStore`` where
only the embedded engine has the operation) and a catalog, and returns plain numbers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.store_bench_data import (
    BRANDS,
    CATEGORIES,
    TOP_K,
    Catalog,
    Indices,
    Vectors,
    bench_manifest,
    brand_filter,
    recall_at_k,
)
from ingest.duplicates.groups import MAX_NEIGHBORS, SCAN_BATCH, find_duplicate_groups
from ingest.store.base import VectorStore, scroll_pages
from ingest.store.edge import EdgeStore
from schemas.points import MatchCondition, PayloadFilter

UPSERT_BATCH = 256
DUPLICATE_THRESHOLD = 0.95
WARM_UP = 3  # untimed calls per query kind: the first ones fault the store's files in


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def disk_bytes(folder: Path) -> int:
    """Bytes the folder's files occupy on disk (allocated blocks, as ``du`` counts them)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue  # a temporary file gone between listing and stat
    return total


def wal_bytes(folder: Path) -> int:
    """Bytes on disk of the write-ahead logs under ``folder`` (qdrant-edge preallocates them
    in 32 MB files, which dominate a small store's footprint)."""
    return sum(disk_bytes(wal) for wal in folder.rglob("wal") if wal.is_dir())


@dataclass(frozen=True)
class Latency:
    """Latencies of one query kind."""

    calls: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        """Percentiles of a list of durations in seconds."""
        values = np.asarray(seconds) * 1000
        return cls(len(seconds), float(np.percentile(values, 50)), float(np.percentile(values, 99)))


def timed(call: Callable[[int], object], calls: int, warm_up: int = WARM_UP) -> Latency:
    """Latency of ``call(i)`` for i in 0..calls-1, after a few untimed warm-up calls."""
    for i in range(min(warm_up, calls)):
        call(i)
    seconds = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - started)
    return Latency.of(seconds)


def warm_pass(store: VectorStore, model_id: str, queries: Vectors) -> None:
    """Query every vector once, untimed. Right after an index swap the new segment's pages
    are not mapped in yet: at 1M points the first few hundred HNSW queries were 10-20x slower
    than the steady state, and whichever measurement came first paid for them."""
    for row in queries:
        store.query(model_id, vector=row.tolist(), limit=TOP_K)


@dataclass
class Loaded:
    """How loading a catalog into a store went."""

    points: int
    upsert_seconds: float  # inside upsert() only: building the NewPoints is not the store's
    wall_seconds: float
    rss_growth_bytes: int
    disk_bytes: int
    wal_bytes: int

    @property
    def points_per_second(self) -> float:
        """Upsert throughput."""
        return self.points / self.upsert_seconds


def load(store: VectorStore, catalog: Catalog, folder: Path, batch: int = UPSERT_BATCH) -> Loaded:
    """Upsert the whole catalog in batches; time it, and the RSS and disk it took."""
    manifest = bench_manifest(catalog.vectors.shape[1])
    store.ensure_collection(manifest)
    rss_before = rss_bytes()
    in_upsert = 0.0
    started = time.perf_counter()
    for points in catalog.batches(batch):
        upsert_started = time.perf_counter()
        store.upsert(manifest, points)
        in_upsert += time.perf_counter() - upsert_started
    wall = time.perf_counter() - started
    rss_growth = rss_bytes() - rss_before
    return Loaded(catalog.size, in_upsert, wall, rss_growth, disk_bytes(folder), wal_bytes(folder))


class QueryKinds:
    """The query suite, each kind a ``call(i)`` over seeded ids, query vectors and filters."""

    def __init__(self, catalog: Catalog, point_ids: list[str], seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        count = len(catalog.queries)
        self.model_id = bench_manifest(catalog.vectors.shape[1]).spec.id
        self.ids = [point_ids[i] for i in rng.integers(catalog.size, size=count)]
        self.vectors = [row.tolist() for row in catalog.queries]
        self.brands = rng.integers(len(BRANDS), size=count).tolist()
        self.categories = rng.integers(len(CATEGORIES), size=count).tolist()

    def calls(self, store: VectorStore) -> dict[str, Callable[[int], object]]:
        """Every kind, by the name the tables show."""
        model = self.model_id
        n = len(self.vectors)

        def brand_and_category(i: int) -> PayloadFilter:
            return PayloadFilter(
                must=[
                    MatchCondition(key="brand", value=BRANDS[self.brands[i % n]]),
                    MatchCondition(key="category", value=CATEGORIES[self.categories[i % n]]),
                ]
            )

        return {
            "similar by id": lambda i: store.query(model, point_id=self.ids[i % n], limit=TOP_K),
            "by vector": lambda i: store.query(model, vector=self.vectors[i % n], limit=TOP_K),
            "by vector, brand filter": lambda i: store.query(
                model,
                vector=self.vectors[i % n],
                filter=brand_filter(self.brands[i % n]),
                limit=TOP_K,
            ),
            "group by product_id": lambda i: store.query_groups(
                model, group_by="product_id", point_id=self.ids[i % n], limit=TOP_K
            ),
            "facet brand": lambda i: store.facet(model, "brand"),
            "count brand+category": lambda i: store.count(model, filter=brand_and_category(i)),
        }

    def run(self, store: VectorStore, calls: int, warm_up: int = WARM_UP) -> dict[str, Latency]:
        """Latency of every kind, ``calls`` timed calls each."""
        return {name: timed(call, calls, warm_up) for name, call in self.calls(store).items()}


@dataclass
class Build:
    """How an index build went: seconds (None if it timed out), and queries meanwhile."""

    seconds: float | None
    changed: bool
    indexed_vectors: int
    during: Latency | None = None
    error: str | None = None
    timed_out: bool = field(default=False)


def build_index(
    store: EdgeStore,
    model_id: str,
    *,
    timeout_s: float,
    query_during: Callable[[int], object] | None = None,
    queries_during: int = 0,
) -> Build:
    """Build the HNSW index from a thread, optionally querying meanwhile; on timeout the store
    is closed (which cancels the build), so the caller must not use it afterwards."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["changed"] = store.build_index(model_id)
        except Exception as exc:  # reported, not raised: the rest of the benchmark goes on
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    started = time.perf_counter()
    builder = threading.Thread(target=run, name="index-build", daemon=True)
    builder.start()
    during: Latency | None = None
    if query_during is not None and queries_during:
        # Only while the build lasts: these are the latencies users see during a rebuild.
        seconds: list[float] = []
        while builder.is_alive() and len(seconds) < queries_during:
            call_started = time.perf_counter()
            query_during(len(seconds))
            seconds.append(time.perf_counter() - call_started)
        during = Latency.of(seconds) if seconds else None
    builder.join(max(0.0, timeout_s - (time.perf_counter() - started)))
    if builder.is_alive():
        store.close()
        builder.join()
        return Build(None, False, 0, during, timed_out=True)
    seconds_taken = time.perf_counter() - started
    error = outcome.get("error")
    if error is not None:
        return Build(seconds_taken, False, 0, during, error=str(error))
    state = store.index_state(model_id)
    return Build(seconds_taken, bool(outcome.get("changed")), state.indexed_vectors, during)


@dataclass(frozen=True)
class DuplicateScan:
    """A duplicate scan: seconds for the scanned points, and for the whole collection."""

    scanned_points: int
    seconds: float
    extrapolated_seconds: float  # = seconds when every point was scanned
    groups: int | None  # only known for a full scan
    extrapolated: bool


def full_duplicate_scan(store: VectorStore, model_id: str, points: int) -> DuplicateScan:
    """``find_duplicate_groups`` over the whole collection at the 0.95 threshold."""
    started = time.perf_counter()
    groups = find_duplicate_groups(store, model_id, threshold=DUPLICATE_THRESHOLD)
    seconds = time.perf_counter() - started
    return DuplicateScan(points, seconds, seconds, len(groups), extrapolated=False)


def partial_duplicate_scan(
    store: VectorStore, model_id: str, points: int, scan_points: int
) -> DuplicateScan:
    """The scan's own steps (a scrolled page with vectors, one ``query_batch`` per page) for
    the first ``scan_points`` points, extrapolated to the collection; the grouping after the
    scan is left out (it is in-memory work, milliseconds next to the queries)."""
    scanned = 0
    started = time.perf_counter()
    for page in scroll_pages(store, model_id, page_size=SCAN_BATCH, with_vectors=True):
        page = page[: scan_points - scanned]
        store.query_batch(
            model_id,
            [p.vector for p in page if p.vector is not None],
            limit=MAX_NEIGHBORS + 1,
            score_threshold=DUPLICATE_THRESHOLD,
        )
        scanned += len(page)
        if scanned >= scan_points:
            break
    seconds = time.perf_counter() - started
    return DuplicateScan(scanned, seconds, seconds * points / scanned, None, extrapolated=True)


@dataclass(frozen=True)
class Recall:
    """Recall@10 against numpy's exact answer, and the latency of the queries that gave it."""

    queries: int
    recall: float
    latency: Latency


def recall_of(
    store: VectorStore,
    model_id: str,
    queries: Vectors,
    truth: Indices,
    index_of: dict[str, int],
    *,
    query_filter: Callable[[int], PayloadFilter | None] | None = None,
) -> Recall:
    """Ask the store for each query's 10 nearest and compare them with ``truth``."""
    answers: list[list[int]] = []
    rows = [row.tolist() for row in queries]
    for row in rows[:WARM_UP]:
        store.query(model_id, vector=row, limit=TOP_K)
    seconds = []
    for i, row in enumerate(rows):
        wanted = None if query_filter is None else query_filter(i)
        started = time.perf_counter()
        hits = store.query(model_id, vector=row, filter=wanted, limit=TOP_K)
        seconds.append(time.perf_counter() - started)
        answers.append([index_of[hit.id] for hit in hits])
    return Recall(len(rows), recall_at_k(truth, answers), Latency.of(seconds))
