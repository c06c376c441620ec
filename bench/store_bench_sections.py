"""The store benchmark's sections, each on stores of its own: qdrant-client's local mode, the
embedded engine before and after its index, HNSW settings, and the million-point run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.store_bench_data import (
    MODEL_ID,
    Catalog,
    Indices,
    Vectors,
    brand_filter,
    exact_top_k,
)
from bench.store_bench_measure import (
    Build,
    DuplicateScan,
    Latency,
    Loaded,
    QueryKinds,
    Recall,
    build_index,
    disk_bytes,
    full_duplicate_scan,
    load,
    partial_duplicate_scan,
    recall_of,
    rss_bytes,
    timed,
    wal_bytes,
    warm_pass,
)
from ingest.store.edge import EdgeStore
from ingest.store.edge_collections import DEFAULT_HNSW, EXACT_BELOW, HnswParams
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import local_client
from schemas.settings import DEFAULT_PAYLOAD_INDEXES

PREFIX = "bench"
QUERIES_DURING_BUILD = 50
QUERIES_AFTER_SWAP = 50
SWEEP_UPSERT_BATCH = 1024  # the sweep's stores only need the points in, not a fair upsert time
# For sets smaller than Qdrant's thresholds (KB of vectors), so that HNSW is really used: the
# default full-scan threshold, 10,000 KB, is about 6,500 vectors of 384 floats.
SMALL_SET_THRESHOLD_KB = 1


def fresh(folder: Path) -> Path:
    """An empty folder (whatever an earlier run left there is removed)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def edge_store(
    folder: Path,
    *,
    hnsw: HnswParams = DEFAULT_HNSW,
    exact_below: int = EXACT_BELOW,
    small_set: bool = False,
) -> EdgeStore:
    """An empty embedded store in ``folder``; ``small_set`` lowers Qdrant's size thresholds."""
    if small_set:
        hnsw = HnswParams(hnsw.m, hnsw.ef_construct, SMALL_SET_THRESHOLD_KB)
    return EdgeStore(
        fresh(folder),
        prefix=PREFIX,
        payload_indexes=DEFAULT_PAYLOAD_INDEXES,
        exact_below=exact_below,
        indexing_threshold_kb=SMALL_SET_THRESHOLD_KB if small_set else None,
        hnsw=hnsw,
    )


@dataclass
class SweepRow:
    """Recall@10 and latency of one HNSW setting on one data set."""

    dataset: str
    m: int
    ef_construct: int
    hnsw_ef: int | None  # None: not set per query (Qdrant then searches with ef_construct)
    recall: float
    p50_ms: float
    p99_ms: float
    build_seconds: float | None
    indexed_vectors: int


def ef_sweep(
    store: EdgeStore,
    dataset: str,
    queries: Vectors,
    truth: Indices,
    index_of: dict[str, int],
    *,
    hnsw: HnswParams,
    efs: tuple[int | None, ...],
    build: Build,
) -> list[SweepRow]:
    """Recall@10 of an indexed store at each query-time ``hnsw_ef``."""
    warm_pass(store, MODEL_ID, queries)  # else the first setting pays for the cold start
    rows = []
    for ef in efs:
        store.hnsw_ef = ef
        found = recall_of(store, MODEL_ID, queries, truth, index_of)
        rows.append(
            SweepRow(
                dataset,
                hnsw.m,
                hnsw.ef_construct,
                ef,
                found.recall,
                found.latency.p50_ms,
                found.latency.p99_ms,
                build.seconds,
                build.indexed_vectors,
            )
        )
    store.hnsw_ef = None
    return rows


@dataclass
class EdgeRun:
    """The embedded engine on one catalog: loading, both search modes, duplicates, recall."""

    loaded: Loaded
    exact: dict[str, Latency]
    exact_recall: Recall
    build: Build
    hnsw: dict[str, Latency] = field(default_factory=dict)
    after_swap: Latency | None = None  # the first queries after the index swap (cold)
    filtered_recall: Recall | None = None
    disk_indexed_bytes: int | None = None
    wal_indexed_bytes: int | None = None
    rss_after_index_bytes: int | None = None
    duplicates_partial: DuplicateScan | None = None
    duplicates_full: DuplicateScan | None = None
    sweep: list[SweepRow] = field(default_factory=list)


def run_edge(
    catalog: Catalog,
    folder: Path,
    *,
    calls: int,
    recall_queries: int,
    efs: tuple[int | None, ...],
    build_timeout_s: float,
    scan_points: int,
    full_scan: bool,
) -> EdgeRun:
    """Load, query exactly, build the index (querying meanwhile), query through HNSW."""
    point_ids = catalog.point_ids()
    index_of = {pid: i for i, pid in enumerate(point_ids)}
    kinds = QueryKinds(catalog, point_ids)
    # The production default decides exact vs HNSW, unless the catalog is smaller (--quick).
    exact_below = EXACT_BELOW if catalog.size > EXACT_BELOW else 0
    store = edge_store(folder, exact_below=exact_below)
    queries = catalog.queries[:recall_queries]
    truth = exact_top_k(catalog.vectors, queries)
    # RSS growth is counted from here: the truth's memory is ours, not the store's.
    rss_start = rss_bytes()
    loaded = load(store, catalog, folder)
    print(f"  edge: {loaded.points:,} points at {loaded.points_per_second:,.0f}/s", flush=True)
    exact = kinds.run(store, calls)
    exact_recall = recall_of(store, MODEL_ID, queries, truth, index_of)
    print(f"  edge exact: recall@10 {exact_recall.recall:.4f}; building the index", flush=True)
    calls_by_kind = kinds.calls(store)
    build = build_index(
        store,
        MODEL_ID,
        timeout_s=build_timeout_s,
        query_during=calls_by_kind["by vector"],
        queries_during=QUERIES_DURING_BUILD,
    )
    run = EdgeRun(loaded, exact, exact_recall, build)
    if build.timed_out or build.error is not None:
        print(f"  edge: index build did not finish ({build.error or 'timed out'})", flush=True)
        store.close()  # idempotent: a timed-out build closed it already
        return run
    print(f"  edge: index built in {build.seconds:.0f} s", flush=True)
    run.rss_after_index_bytes = rss_bytes() - rss_start
    run.disk_indexed_bytes = disk_bytes(folder)
    run.wal_indexed_bytes = wal_bytes(folder)
    # What users see right after a rebuild, then the steady state (see ``warm_pass``).
    run.after_swap = timed(calls_by_kind["by vector"], QUERIES_AFTER_SWAP, warm_up=0)
    warm_pass(store, MODEL_ID, queries)
    run.hnsw = kinds.run(store, calls)
    run.sweep = ef_sweep(
        store, catalog.name, queries, truth, index_of, hnsw=DEFAULT_HNSW, efs=efs, build=build
    )
    brands = kinds.brands[: len(queries)]
    run.filtered_recall = recall_of(
        store,
        MODEL_ID,
        queries,
        filtered_truth(catalog, queries, brands),
        index_of,
        query_filter=lambda i: brand_filter(brands[i]),
    )
    run.duplicates_partial = partial_duplicate_scan(store, MODEL_ID, catalog.size, scan_points)
    if full_scan:
        print("  edge: full duplicate scan ...", flush=True)
        run.duplicates_full = full_duplicate_scan(store, MODEL_ID, catalog.size)
    store.close()
    return run


def filtered_truth(catalog: Catalog, queries: Vectors, brands: list[int]) -> Indices:
    """The exact top 10 of each query among the points of its brand."""
    rows = []
    for query, brand in zip(queries, brands, strict=True):
        of_brand = np.flatnonzero(catalog.brand == brand)
        [top] = exact_top_k(catalog.vectors[of_brand], query[None, :])
        rows.append(of_brand[top])
    return np.stack(rows)


@dataclass
class LocalRun:
    """qdrant-client's local mode on the same catalog (few queries: it scans in Python)."""

    loaded: Loaded
    queries: dict[str, Latency]
    duplicates_partial: DuplicateScan


def run_local(catalog: Catalog, folder: Path, *, calls: int, scan_points: int) -> LocalRun:
    """Load into local mode on disk, time the query suite and a part of a duplicate scan."""
    point_ids = catalog.point_ids()
    kinds = QueryKinds(catalog, point_ids)
    store = QdrantStore(local_client(str(fresh(folder))), prefix=PREFIX)
    try:
        loaded = load(store, catalog, folder)
        print(f"  local: {loaded.points:,} points at {loaded.points_per_second:,.0f}/s", flush=True)
        queries = kinds.run(store, calls, warm_up=1)
        scan = partial_duplicate_scan(store, MODEL_ID, catalog.size, scan_points)
    finally:
        store.close()
    return LocalRun(loaded, queries, scan)


def run_sweep(
    catalog: Catalog,
    folder: Path,
    *,
    settings: tuple[HnswParams, ...],
    efs: tuple[int | None, ...],
    build_timeout_s: float,
    small_set: bool,
) -> list[SweepRow]:
    """For each HNSW setting: a store of the catalog, its index, recall at every ``hnsw_ef``."""
    point_ids = catalog.point_ids()
    index_of = {pid: i for i, pid in enumerate(point_ids)}
    truth = exact_top_k(catalog.vectors, catalog.queries)
    rows: list[SweepRow] = []
    for hnsw in settings:
        store = edge_store(folder, hnsw=hnsw, exact_below=0, small_set=small_set)
        try:
            load(store, catalog, folder, batch=SWEEP_UPSERT_BATCH)
            build = build_index(store, MODEL_ID, timeout_s=build_timeout_s)
            if build.timed_out or build.error is not None:
                print(f"  m={hnsw.m} ef_construct={hnsw.ef_construct}: no index", flush=True)
                continue
            print(
                f"  {catalog.name}: m={hnsw.m} ef_construct={hnsw.ef_construct} built in "
                f"{build.seconds:.0f} s",
                flush=True,
            )
            rows += ef_sweep(
                store,
                catalog.name,
                catalog.queries,
                truth,
                index_of,
                hnsw=hnsw,
                efs=efs,
                build=build,
            )
        finally:
            store.close()
    shutil.rmtree(folder, ignore_errors=True)
    return rows
