"""Embedding exports on the real embedded store: every format read back and compared with the
store's own scroll, filtered subsets, a collection changing meanwhile, constant memory."""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.errors import CollectionNotFound, ExtraNotInstalled
from ingest.store.base import VectorStore, scroll_pages
from ingest.store.current import open_store
from ingest.vector_export.plan import plan_export
from ingest.vector_export.run import write_export
from ingest.vector_export.writers import sidecar_path
from schemas.exports import ExportFormat
from schemas.models import ModelManifest, ModelSpec
from schemas.points import MatchCondition, NewPoint, PayloadFilter
from schemas.settings import Settings

MODEL_ID = "export-model"
DIM = 24
BRANDS = ("acme", "globex", "hooli")


def manifest(dimension: int = DIM) -> ModelManifest:
    spec = ModelSpec(id=MODEL_ID, family="custom", dimension=dimension)
    return ModelManifest(spec=spec, sha256="cd" * 32, source="test")


def add_points(store: VectorStore, n: int, *, dim: int = DIM, start: int = 0) -> None:
    """Synthetic points in batches: brand and price payloads, unicode included."""
    rng = np.random.default_rng(start)
    for first in range(start, start + n, 5000):
        count = min(5000, start + n - first)
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        points = [
            NewPoint(
                item_id=f"sku-{first + i:06d}",
                image_sha256=f"{first + i:064x}",
                vector=vectors[i].tolist(),
                source_uri=f"blob://catalog/{first + i}.jpg",
                metadata={
                    "brand": BRANDS[(first + i) % 3],
                    "price": (first + i) % 50 + 0.5,
                    "title": f"Größe {first + i} — ☂",
                },
            )
            for i in range(count)
        ]
        store.upsert(manifest(dim), points)


@pytest.fixture
def store(settings: Settings) -> Iterator[VectorStore]:
    """The embedded store (qdrant-edge) in the test's data dir."""
    opened = open_store(settings)
    yield opened
    opened.close()


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """An empty folder for the exported files."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


def stored(store: VectorStore, filter: PayloadFilter | None = None) -> list[dict[str, Any]]:
    """What the store itself holds, in scroll order: the expected content of an export."""
    return [
        {"id": p.id, "item_id": p.item_id, "payload": p.payload, "vector": p.vector}
        for page in scroll_pages(store, MODEL_ID, page_size=97, filter=filter, with_vectors=True)
        for p in page
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The lines' objects; vectors as float32 values (what the store holds), as Python floats."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if "vector" in row:
            row["vector"] = np.asarray(row["vector"], dtype=np.float32).tolist()
    return rows


def read_npy(path: Path) -> list[dict[str, Any]]:
    matrix = np.load(path)
    assert matrix.dtype == np.float32
    rows = read_jsonl(sidecar_path(path))
    assert matrix.shape == (len(rows), DIM)
    return [{**row, "vector": matrix[i].tolist()} for i, row in enumerate(rows)]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    assert str(table.schema.field("vector").type) == f"fixed_size_list<element: float>[{DIM}]"
    assert table.schema.metadata[b"lookalike.model_id"] == MODEL_ID.encode()
    return [
        {**row, "payload": json.loads(row["payload"]), "vector": row["vector"]}
        for row in table.to_pylist()
    ]


READERS = {
    ExportFormat.JSONL: read_jsonl,
    ExportFormat.NPY: read_npy,
    ExportFormat.PARQUET: read_parquet,
}


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_each_format_reads_back_as_the_store_holds_it(
    store: VectorStore, exports: Path, fmt: ExportFormat
) -> None:
    add_points(store, 1000)
    out = exports / f"points.{fmt.value}"
    # Pages of 64 so that the export spans many pages (and Parquet many row groups).
    summary = write_export(store, plan_export(store, MODEL_ID), fmt, out, page_size=64)

    expected = stored(store)
    assert len(expected) == summary.points == summary.expected == 1000
    assert not summary.changed
    assert summary.bytes == sum(path.stat().st_size for path in summary.files)
    exported = READERS[fmt](out)
    # Ids, item ids and payloads exactly; vectors exactly too (float32 all the way).
    assert exported == expected
    if fmt is ExportFormat.PARQUET:
        assert pq.ParquetFile(out).metadata.num_row_groups == -(-1000 // 64)
    # Nothing but the export itself is left beside it.
    assert sorted(exports.iterdir()) == sorted(summary.files)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_a_filtered_export_holds_exactly_the_matching_points(
    store: VectorStore, exports: Path, fmt: ExportFormat
) -> None:
    add_points(store, 600)
    only_acme = PayloadFilter(must=[MatchCondition(key="brand", value="acme")])
    out = exports / f"acme.{fmt.value}"
    summary = write_export(store, plan_export(store, MODEL_ID, only_acme), fmt, out)

    exported = READERS[fmt](out)
    assert exported == stored(store, only_acme)
    assert summary.points == len(exported) == 200
    assert {row["payload"]["brand"] for row in exported} == {"acme"}


def test_an_empty_selection_writes_valid_empty_files(store: VectorStore, tmp_path: Path) -> None:
    add_points(store, 10)
    nothing = PayloadFilter(must=[MatchCondition(key="brand", value="nobody")])
    plan = plan_export(store, MODEL_ID, nothing)
    for fmt in ExportFormat:
        write_export(store, plan, fmt, tmp_path / f"none.{fmt.value}")
        assert READERS[fmt](tmp_path / f"none.{fmt.value}") == []
    assert np.load(tmp_path / "none.npy").shape == (0, DIM)


def test_the_npy_header_states_the_rows_written_when_points_go_during_the_export(
    store: VectorStore, tmp_path: Path
) -> None:
    add_points(store, 500)
    plan = plan_export(store, MODEL_ID)
    everything = [row["id"] for row in stored(store)]
    read: list[int] = []

    def delete_the_rest(points: int) -> None:
        # After the first page, every point not read yet is deleted.
        if not read:
            store.delete_points(MODEL_ID, everything[points:])
        read.append(points)

    out = tmp_path / "vectors.npy"
    summary = write_export(
        store, plan, ExportFormat.NPY, out, page_size=100, progress=delete_the_rest
    )

    assert (summary.expected, summary.points) == (500, 100)
    assert summary.changed
    assert np.load(out).shape == (100, DIM)
    assert [row["id"] for row in read_npy(out)] == everything[:100]


def test_an_interrupted_export_leaves_no_file(store: VectorStore, exports: Path) -> None:
    add_points(store, 300)
    out = exports / "vectors.npy"

    def interrupt(points: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_export(store, plan_export(store, MODEL_ID), ExportFormat.NPY, out, progress=interrupt)
    assert list(out.parent.iterdir()) == []


def test_an_unknown_model_is_refused(store: VectorStore) -> None:
    with pytest.raises(CollectionNotFound, match="no collection for model 'nope'"):
        plan_export(store, "nope")


def test_parquet_without_pyarrow_names_the_extra(
    store: VectorStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_points(store, 3)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "points.parquet"
    with pytest.raises(ExtraNotInstalled, match=r"pip install 'lookalike\[parquet\]'"):
        write_export(store, plan_export(store, MODEL_ID), ExportFormat.PARQUET, out)
    assert not out.exists()


BIG_DIM = 384


def _traced_export(store: VectorStore, out: Path) -> tuple[int, int]:
    """Points written and the peak of Python memory while an npy export runs."""
    plan = plan_export(store, MODEL_ID)
    tracemalloc.start()
    try:
        summary = write_export(store, plan, ExportFormat.NPY, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return summary.points, peak


def test_export_memory_does_not_grow_with_the_collection(
    store: VectorStore, tmp_path: Path
) -> None:
    # Tracing makes the store's float conversions slow (100,000 points took about two
    # minutes), so a small and an eight times larger collection show the shape instead:
    # the peak is a page or two either way. At 100,000 x 384 the peak was 7.4 MB.
    add_points(store, 2_000, dim=BIG_DIM)
    small_points, small_peak = _traced_export(store, tmp_path / "small.npy")
    add_points(store, 14_000, dim=BIG_DIM, start=2_000)
    started = time.perf_counter()
    big_points, big_peak = _traced_export(store, tmp_path / "big.npy")
    seconds = time.perf_counter() - started
    all_vectors = big_points * BIG_DIM * 4

    print(
        f"npy export: peak {small_peak / 1e6:.1f} MB at {small_points} points, "
        f"{big_peak / 1e6:.1f} MB at {big_points} ({seconds:.1f}s traced)"
    )
    assert (small_points, big_points) == (2_000, 16_000)
    matrix = np.load(tmp_path / "big.npy", mmap_mode="r")
    assert matrix.shape == (16_000, BIG_DIM)
    assert big_peak < all_vectors / 3, f"peak {big_peak / 1e6:.1f} MB"
    # Eight times the points, about the same peak: memory is per page, not per collection.
    assert big_peak < 1.5 * small_peak + 1e6, (small_peak, big_peak)
