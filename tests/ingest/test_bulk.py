"""Bulk ingestion of folders and catalog CSVs: real files, real ONNX model, real local Qdrant."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from ingest.images.decode import load_for_model
from ingest.ingestion.bulk import (
    BulkIngestor,
    SourceImage,
    catalog_sources,
    folder_sources,
    image_extensions,
    parse_cell,
)
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import ModelRuntime, load_runtime
from ingest.store.base import point_id
from ingest.store.qdrant import QdrantStore
from schemas.ingestion import IngestSummary
from schemas.points import PayloadFilter, StoredPoint
from schemas.settings import Settings
from tests.ingest.catalog_samples import (
    BAD_FOLDER_ITEMS,
    CATALOG_SIZE,
    GOOD_FOLDER_ITEMS,
    catalog_row,
    write_catalog,
    write_csv,
    write_photo_folder,
    write_picture,
)
from tests.support import TEST_MODEL_ID


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_points(store: QdrantStore, model_id: str = TEST_MODEL_ID) -> list[StoredPoint]:
    points, next_page = store.scroll(model_id, limit=1000)
    assert next_page is None
    return points


def item_points(
    store: QdrantStore, item_id: str, model_id: str = TEST_MODEL_ID
) -> list[StoredPoint]:
    points, _ = store.scroll(
        model_id, filter=PayloadFilter.from_pairs({"item_id": item_id}), limit=100
    )
    return points


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def store() -> Iterator[QdrantStore]:
    """A real qdrant-client local-mode store in RAM."""
    opened = QdrantStore(QdrantClient(location=":memory:"))
    yield opened
    opened.close()


@pytest.fixture
def runtime(settings: Settings) -> ModelRuntime:
    return load_runtime(settings, TEST_MODEL_ID)


@pytest.fixture
def ingestor(store: QdrantStore, runtime: ModelRuntime, settings: Settings) -> BulkIngestor:
    # Batches of 4 so that every scenario spans several batches.
    return BulkIngestor(store, [runtime], settings.images, batch_size=4)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    return write_photo_folder(tmp_path / "photos")


def run(ingestor: BulkIngestor, sources: Sequence[SourceImage], **kwargs: Any) -> IngestSummary:
    return ingestor.run(sources, progress=False, **kwargs)


# --- folders --------------------------------------------------------------------------------


def test_folder_sources_are_nested_images_named_by_relative_path(photo_folder: Path) -> None:
    sources = folder_sources(photo_folder)
    ids = [source.job.item_id for source in sources if source.job is not None]
    assert sorted(ids) == sorted([*GOOD_FOLDER_ITEMS, *BAD_FOLDER_ITEMS])
    by_id = {source.job.item_id: source for source in sources if source.job is not None}
    red = by_id["shoes/red"]
    assert red.path == photo_folder / "shoes" / "red.jpg"
    assert red.job is not None
    assert red.job.source_uri == (photo_folder / "shoes" / "red.jpg").resolve().as_uri()
    assert red.job.metadata == {}


def test_image_extensions_are_the_ones_pillow_can_open() -> None:
    extensions = image_extensions()
    assert {".jpg", ".jpeg", ".png", ".webp", ".heic", ".avif", ".tif", ".gif", ".mpo"} <= (
        extensions
    )
    # .pdf and .palm are formats Pillow can only write.
    assert extensions.isdisjoint({".pdf", ".palm", ".txt", ".csv", ".json", ""})


def test_folder_inside_a_hidden_directory_is_still_ingested(tmp_path: Path) -> None:
    # Only hidden parts *below* the root are skipped: ~/.cache/shots/x.jpg is a fine root.
    root = tmp_path / ".cache" / "shots"
    write_picture(root / "a.jpg", 0)
    write_picture(root / ".b.jpg", 1)
    assert [s.job.item_id for s in folder_sources(root) if s.job is not None] == ["a"]


def test_files_that_would_share_an_item_id_keep_their_suffix_and_say_so(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    shots = tmp_path / "shots"
    write_picture(shots / "photo.jpg", 0)
    write_picture(shots / "photo.png", 1)
    write_picture(shots / "other.jpg", 2)
    write_picture(shots / "sub" / "photo.jpg", 3)  # another folder: item sub/photo, no clash

    sources = folder_sources(shots)

    by_file = {s.path.relative_to(shots).as_posix(): s for s in sources if s.path is not None}
    assert {name: s.job.item_id for name, s in by_file.items() if s.job is not None} == {
        "photo.jpg": "photo.jpg",
        "photo.png": "photo.png",
        "other.jpg": "other",
        "sub/photo.jpg": "sub/photo",
    }
    assert (by_file["other.jpg"].note, by_file["sub/photo.jpg"].note) == (None, None)
    for mine, theirs in (("photo.jpg", "photo.png"), ("photo.png", "photo.jpg")):
        note = by_file[mine].note
        assert note is not None
        assert note.startswith(f"{mine} is item {mine!r}")
        assert theirs in note
        assert "'photo'" in note
    summary = run(ingestor, sources)
    assert (summary.ingested, summary.failed) == (4, 0)
    items = sorted(p.item_id for p in all_points(store))
    assert items == ["other", "photo.jpg", "photo.png", "sub/photo"]


def test_a_kept_suffix_that_meets_another_files_name_keeps_that_ones_too(tmp_path: Path) -> None:
    # photo.jpg keeps its suffix for photo.png; photo.jpg.png would then be item photo.jpg.
    for index, name in enumerate(("photo.jpg", "photo.png", "photo.jpg.png")):
        write_picture(tmp_path / name, index)

    ids = sorted(s.job.item_id for s in folder_sources(tmp_path) if s.job is not None)

    assert ids == ["photo.jpg", "photo.jpg.png", "photo.png"]


def test_folder_ingestion_stores_good_images_and_reports_bad_ones(
    ingestor: BulkIngestor, store: QdrantStore, photo_folder: Path
) -> None:
    summary = run(ingestor, folder_sources(photo_folder))

    assert (summary.ingested, summary.skipped, summary.failed) == (5, 0, 3)
    assert {f.item_id: f.reason for f in summary.failures} == BAD_FOLDER_ITEMS
    empty = next(f for f in summary.failures if f.item_id == "broken/empty")
    assert empty.source == (photo_folder / "broken" / "empty.png").resolve().as_uri()
    points = all_points(store)
    assert sorted(p.item_id for p in points) == sorted(GOOD_FOLDER_ITEMS)
    for point in points:
        path = photo_folder / GOOD_FOLDER_ITEMS[point.item_id]
        assert point.id == point_id(point.item_id, sha256_of(path))
        assert point.payload["image_sha256"] == sha256_of(path)
        assert point.payload["source_uri"] == path.resolve().as_uri()


def test_stored_vectors_are_the_models_embeddings_of_the_files(
    ingestor: BulkIngestor,
    store: QdrantStore,
    runtime: ModelRuntime,
    settings: Settings,
    photo_folder: Path,
) -> None:
    run(ingestor, folder_sources(photo_folder))
    points, _ = store.scroll(TEST_MODEL_ID, limit=100, with_vectors=True)
    assert len(points) == len(GOOD_FOLDER_ITEMS)
    for point in points:
        data = (photo_folder / GOOD_FOLDER_ITEMS[point.item_id]).read_bytes()
        expected = runtime.embedder.embed(
            load_for_model(data, runtime.preprocessing, settings.images)[None]
        )[0]
        assert point.vector is not None
        np.testing.assert_allclose(point.vector, expected, atol=1e-5)
    vectors = np.array([p.vector for p in points])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    assert similarity.max() < 0.99, "test pictures must be genuinely different"


def test_second_run_skips_everything_already_stored(
    ingestor: BulkIngestor, store: QdrantStore, photo_folder: Path
) -> None:
    run(ingestor, folder_sources(photo_folder))
    before = {p.id: p.payload["ingested_at"] for p in all_points(store)}

    again = run(ingestor, folder_sources(photo_folder))

    assert (again.ingested, again.skipped, again.failed) == (0, 5, 3)
    # Skipped means not rewritten: the points keep their first ingestion time.
    assert {p.id: p.payload["ingested_at"] for p in all_points(store)} == before


def test_limited_trial_run_then_full_run_resumes(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    for index in range(7):
        write_picture(tmp_path / "shots" / f"{index}.jpg", index)
    sources = folder_sources(tmp_path / "shots")

    trial = run(ingestor, sources, limit=3)
    assert (trial.ingested, trial.skipped, trial.failed) == (3, 0, 0)
    assert sorted(p.item_id for p in all_points(store)) == ["0", "1", "2"]

    full = run(ingestor, sources)
    assert (full.ingested, full.skipped, full.failed) == (4, 3, 0)
    assert store.count(TEST_MODEL_ID) == 7


def test_same_image_under_two_item_ids_is_two_points(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    write_picture(tmp_path / "shots" / "a.jpg", 0)
    (tmp_path / "shots" / "b.jpg").write_bytes((tmp_path / "shots" / "a.jpg").read_bytes())

    summary = run(ingestor, folder_sources(tmp_path / "shots"))

    assert summary.ingested == 2
    points = all_points(store)
    assert sorted(p.item_id for p in points) == ["a", "b"]
    assert len({p.payload["image_sha256"] for p in points}) == 1


def test_new_image_bytes_for_the_same_item_add_a_point(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    path = write_picture(tmp_path / "shots" / "a.jpg", 0)
    run(ingestor, folder_sources(tmp_path / "shots"))
    first_sha = sha256_of(path)
    write_picture(path, 1)

    summary = run(ingestor, folder_sources(tmp_path / "shots"))

    assert (summary.ingested, summary.skipped) == (1, 0)
    shas = {p.payload["image_sha256"] for p in item_points(store, "a")}
    assert shas == {first_sha, sha256_of(path)}


# --- catalogs -------------------------------------------------------------------------------


def test_catalog_columns_become_payload_with_numbers_as_numbers(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    csv_path, images = write_catalog(tmp_path)

    summary = run(ingestor, catalog_sources(csv_path, images))

    assert (summary.ingested, summary.failed) == (CATALOG_SIZE, 0)
    payload = item_points(store, "sku-01")[0].payload
    assert payload["price"] == 12.5
    assert isinstance(payload["price"], float)
    assert payload["stock"] == 1
    assert isinstance(payload["stock"], int)
    assert payload["brand"] == "globex"
    assert payload["product_id"] == "p0"
    assert payload["source_uri"] == (images / "01.jpg").resolve().as_uri()
    # The id and image columns are the point's identity, not metadata.
    assert "image" not in payload
    assert payload["item_id"] == "sku-01"
    assert isinstance(item_points(store, "sku-06")[0].payload["price"], int)  # "10"


def test_empty_catalog_cells_are_left_out_of_the_payload(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    write_picture(tmp_path / "a.jpg", 0)
    row = {"item_id": "a", "image": "a.jpg", "brand": "  ", "price": "", "note": " spaced "}
    csv_path = write_csv(tmp_path / "c.csv", [row], fields=list(row))

    run(ingestor, catalog_sources(csv_path, tmp_path))

    payload = item_points(store, "a")[0].payload
    assert "brand" not in payload
    assert "price" not in payload
    assert payload["note"] == "spaced"


def test_bad_catalog_rows_are_reported_and_the_rest_ingested(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    csv_path, images = write_catalog(tmp_path / "shop")
    write_picture(tmp_path / "outside.jpg", 20)  # exists, but outside the images folder
    (images / "escape.jpg").symlink_to(tmp_path / "outside.jpg")
    base = catalog_row(0)
    bad_rows = [
        {**base, "item_id": ""},
        {**base, "item_id": "no-image", "image": " "},
        {**base, "item_id": "missing", "image": "nope.jpg"},
        {**base, "item_id": "traversal", "image": "../outside.jpg"},
        {**base, "item_id": "absolute", "image": str(tmp_path / "outside.jpg")},
        {**base, "item_id": "symlink", "image": "escape.jpg"},
    ]
    rows = [catalog_row(i) for i in range(CATALOG_SIZE)]
    write_csv(csv_path, rows[:4] + bad_rows + rows[4:])

    summary = run(ingestor, catalog_sources(csv_path, images))

    assert (summary.ingested, summary.failed) == (CATALOG_SIZE, 6)
    assert [(f.item_id, f.reason) for f in summary.failures] == [
        (None, "bad_row"),
        ("no-image", "bad_row"),
        ("missing", "not_found"),
        ("traversal", "forbidden_path"),
        ("absolute", "forbidden_path"),
        ("symlink", "forbidden_path"),
    ]
    # Rows are reported with their CSV line (header is line 1, first row line 2).
    assert summary.failures[0].source == "catalog.csv:6"
    assert summary.failures[0].message == "empty 'item_id'"
    assert summary.failures[1].message == "empty 'image'"
    assert store.count(TEST_MODEL_ID) == CATALOG_SIZE


@pytest.mark.parametrize("dropped", ["item_id", "image"])
def test_catalog_without_a_required_column_is_refused(tmp_path: Path, dropped: str) -> None:
    row = {key: value for key, value in catalog_row(0).items() if key != dropped}
    csv_path = write_csv(tmp_path / "c.csv", [row], fields=list(row))
    with pytest.raises(ValueError, match=rf"missing column\(s\) \['{dropped}'\]"):
        catalog_sources(csv_path, tmp_path)


def test_catalog_id_and_image_columns_can_be_chosen(
    ingestor: BulkIngestor, store: QdrantStore, tmp_path: Path
) -> None:
    write_picture(tmp_path / "img" / "one.jpg", 0)
    write_picture(tmp_path / "img" / "two.jpg", 1)
    rows = [{"sku": "A1", "photo": "one.jpg", "item_id": "x"}, {"sku": "B2", "photo": "two.jpg"}]
    csv_path = write_csv(tmp_path / "c.csv", rows, fields=["sku", "photo", "item_id"])

    with pytest.raises(ValueError, match="image"):
        catalog_sources(csv_path, tmp_path / "img")
    summary = run(
        ingestor,
        catalog_sources(csv_path, tmp_path / "img", id_column="sku", image_column="photo"),
    )

    assert summary.ingested == 2
    assert sorted(p.item_id for p in all_points(store)) == ["A1", "B2"]
    # An "item_id" column that is not the id column is ordinary metadata, and cannot override
    # the point's identity.
    assert item_points(store, "A1")[0].payload["item_id"] == "A1"


def test_catalog_saved_by_excel_with_a_byte_order_mark(tmp_path: Path) -> None:
    write_picture(tmp_path / "a.jpg", 0)
    (tmp_path / "c.csv").write_bytes("\ufeffitem_id,image\na,a.jpg\n".encode())
    sources = catalog_sources(tmp_path / "c.csv", tmp_path)
    assert [s.job.item_id for s in sources if s.job is not None] == ["a"]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("3", 3),
        ("-4", -4),
        ("12.5", 12.5),
        ("1e3", 1000.0),
        ("0", 0),
        ("0.5", 0.5),
        ("acme", "acme"),
        ("12 cm", "12 cm"),
        # Words Python would read as floats: brands, not numbers.
        ("nan", "nan"),
        ("Nan", "Nan"),
        ("Infinity", "Infinity"),
        ("-inf", "-inf"),
        # Codes: int() would lose the leading zeros and join the underscore parts.
        ("007", "007"),
        ("0123456789012", "0123456789012"),
        ("2024_01", "2024_01"),
    ],
)
def test_parse_cell_keeps_numbers_numeric_and_codes_as_text(cell: str, expected: object) -> None:
    parsed = parse_cell(cell)
    assert parsed == expected
    assert type(parsed) is type(expected)


# --- several models -------------------------------------------------------------------------


@pytest.fixture
def second_runtime(settings: Settings, registry: ModelRegistry) -> ModelRuntime:
    """The test model registered again under another id: a second collection."""
    registry.register(registry.model_path(TEST_MODEL_ID), "tiny-copy", random_weights=True)
    return load_runtime(settings, "tiny-copy")


def test_every_model_gets_every_image(
    store: QdrantStore,
    runtime: ModelRuntime,
    second_runtime: ModelRuntime,
    settings: Settings,
    photo_folder: Path,
) -> None:
    both = BulkIngestor(store, [runtime, second_runtime], settings.images, batch_size=4)

    summary = run(both, folder_sources(photo_folder))

    assert (summary.ingested, summary.failed) == (5, 3)
    assert store.count(TEST_MODEL_ID) == 5
    assert store.count("tiny-copy") == 5
    assert {c.model_id: c.points for c in store.collections()} == {
        TEST_MODEL_ID: 5,
        "tiny-copy": 5,
    }
    copy_payload = all_points(store, "tiny-copy")[0].payload
    assert copy_payload["model_fingerprint"] == second_runtime.manifest.fingerprint


def test_resuming_embeds_only_into_the_model_that_misses_images(
    store: QdrantStore,
    ingestor: BulkIngestor,
    runtime: ModelRuntime,
    second_runtime: ModelRuntime,
    settings: Settings,
    photo_folder: Path,
) -> None:
    # First model only, partly: the first 6 sources are 3 good images and the 3 broken ones.
    run(ingestor, folder_sources(photo_folder), limit=6)
    first_model_before = {p.id: p.payload["ingested_at"] for p in all_points(store)}
    assert len(first_model_before) == 3

    both = BulkIngestor(store, [runtime, second_runtime], settings.images, batch_size=4)
    summary = run(both, folder_sources(photo_folder))

    # Every good image was missing from at least one model, so none is "skipped".
    assert (summary.ingested, summary.skipped, summary.failed) == (5, 0, 3)
    assert store.count("tiny-copy") == 5
    first_model_after = {p.id: p.payload["ingested_at"] for p in all_points(store)}
    assert len(first_model_after) == 5
    # The first model's stored points were not embedded and written again.
    assert {k: first_model_after[k] for k in first_model_before} == first_model_before

    again = run(both, folder_sources(photo_folder))
    assert (again.ingested, again.skipped) == (0, 5)
