"""The ``lookalike`` CLI, in process with CliRunner and once as the installed console script.

Everything is real: the committed random-weight test model on ONNX Runtime, qdrant-client's
local mode on disk, image files on disk.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import pytest
from click.testing import CliRunner, Result

from ingest.models.registry import ModelRegistry, file_sha256
from ingest.store.current import open_store
from schemas.models import ModelFamily, ResizeMode
from schemas.settings import Settings
from search_api.cli import cli
from tests.ingest.catalog_samples import (
    BAD_FOLDER_ITEMS,
    BRANDS,
    CATALOG_SIZE,
    GOOD_FOLDER_ITEMS,
    PRICES,
    catalog_row,
    write_catalog,
    write_csv,
    write_photo_folder,
    write_picture,
)
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID

Env = dict[str, str | None]

RANDOM_WARNING = f"WARNING: model {TEST_MODEL_ID!r} has RANDOM WEIGHTS"


def lookalike_env(data_dir: Path, models_dir: Path) -> Env:
    """Environment for one isolated Lookalike: every other LOOKALIKE_* variable unset."""
    env: Env = {name: None for name in os.environ if name.startswith("LOOKALIKE_")}
    env.update(
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_MODELS_DIR=str(models_dir),
        LOOKALIKE_DEFAULT_MODEL=TEST_MODEL_ID,
        LOOKALIKE_INTRA_OP_THREADS="1",
    )
    return env


def invoke(env: Env, *args: str | Path) -> Result:
    """Run the CLI in process. Unexpected exceptions propagate: a passing test saw none."""
    return CliRunner(env=env).invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def assert_clean_failure(result: Result, exit_code: int = 1) -> None:
    """A one-line error and an exit code, not a traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert "Error: " in result.stderr


def search_json(env: Env, *args: str | Path) -> list[dict[str, Any]]:
    result = invoke(env, "search", "--json", *args)
    assert result.exit_code == 0, result.output
    hits: list[dict[str, Any]] = json.loads(result.stdout)
    return hits


def point_count(settings: Settings, model_id: str = TEST_MODEL_ID) -> int:
    """Points in a model's collection, read with the store closed again before the CLI runs."""
    store = open_store(settings)
    try:
        return {info.model_id: info.points for info in store.collections()}.get(model_id, 0)
    finally:
        store.close()


@pytest.fixture
def env(settings: Settings) -> Env:
    return lookalike_env(settings.data_dir, settings.models_dir)


# --- models ---------------------------------------------------------------------------------


def test_models_list_shows_the_test_model_installed_with_random_weights(env: Env) -> None:
    result = invoke(env, "models", "list")

    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    test_model = lines[TEST_MODEL_ID]
    assert "(default)" in test_model
    assert " 96 " in test_model
    assert "installed sha256:781f7bdc2762" in test_model
    assert "RANDOM WEIGHTS" in test_model
    assert "not installed" in lines["dinov2-vits14"]
    assert " 384 " in lines["dinov2-vits14"]
    assert "not installed" in lines["dinov3-vitl16"]


def test_models_register_reads_the_dimension_from_the_file(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    onnx_file = shutil.copy(TEST_MODEL_DIR / "model.onnx", tmp_path / "finetuned.onnx")

    result = invoke(env, "models", "register", onnx_file, "--id", "my-finetuned")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("registered my-finetuned: 96-d, my-finetuned@sha256:")
    spec = ModelRegistry(settings.models_dir).manifest("my-finetuned").spec
    assert spec.family is ModelFamily.CUSTOM
    assert spec.preprocessing.resize is ResizeMode.SQUASH
    assert spec.preprocessing.input_size == 224
    listed = invoke(env, "models", "list").stdout
    line = next(line for line in listed.splitlines() if line.startswith("my-finetuned"))
    assert "custom" in line
    assert "installed" in line
    assert "RANDOM WEIGHTS" not in line


def test_models_register_with_family_and_resize(env: Env, settings: Settings) -> None:
    result = invoke(
        env,
        "models",
        "register",
        TEST_MODEL_DIR / "model.onnx",
        "--id",
        "mine",
        "--family",
        "dinov2",
        "--resize",
        "shortest_side_center_crop",
        "--input-size",
        "112",
    )

    assert result.exit_code == 0, result.output
    spec = ModelRegistry(settings.models_dir).manifest("mine").spec
    assert spec.family is ModelFamily.DINOV2
    assert spec.preprocessing.resize is ResizeMode.SHORTEST_SIDE_CROP
    assert spec.preprocessing.input_size == 112


def test_models_register_refuses_a_known_model_id(env: Env) -> None:
    result = invoke(
        env, "models", "register", TEST_MODEL_DIR / "model.onnx", "--id", "dinov2-vits14"
    )
    assert_clean_failure(result)
    assert "'dinov2-vits14' is a known model id" in result.stderr


def test_models_export_tiny_without_random_init_is_refused(env: Env, settings: Settings) -> None:
    result = invoke(env, "models", "export", "dinov2-vits14", "--tiny")

    assert_clean_failure(result)
    assert "--tiny makes a new architecture size: it needs --random-init" in result.stderr
    assert [m.spec.id for m in ModelRegistry(settings.models_dir).installed()] == [TEST_MODEL_ID]


@dataclass
class ModelServer:
    """A local HTTP server serving the test model's bytes, counting the requests it gets."""

    url: str
    requests: list[str]


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    requests: list[str] = []
    body = (TEST_MODEL_DIR / "model.onnx").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield ModelServer(url=f"http://127.0.0.1:{server.server_port}/model.onnx", requests=requests)
    server.shutdown()
    server.server_close()
    thread.join()


def test_models_fetch_without_a_checksum_is_refused_before_any_download(
    env: Env, settings: Settings, model_server: ModelServer
) -> None:
    published = invoke(env, "models", "fetch", "dinov2-vits14")
    own_url = invoke(env, "models", "fetch", "dinov2-vits14", "--url", model_server.url)

    for result in (published, own_url):
        assert_clean_failure(result)
        assert "no published checksum known for this file" in result.stderr
        assert "--allow-unverified" in result.stderr
    assert model_server.requests == []
    assert not (settings.models_dir / "dinov2-vits14").exists()


def test_models_fetch_refuses_a_file_with_another_checksum(
    env: Env, settings: Settings, model_server: ModelServer
) -> None:
    result = invoke(
        env, "models", "fetch", "dinov2-vits14", "--url", model_server.url, "--sha256", "0" * 64
    )

    assert_clean_failure(result)
    assert f"expected sha256 {'0' * 64}, got {file_sha256(TEST_MODEL_DIR / 'model.onnx')}" in (
        result.stderr
    )
    assert model_server.requests == ["/model.onnx"]
    leftovers = settings.models_dir / "dinov2-vits14"
    assert not leftovers.exists() or list(leftovers.iterdir()) == []


def test_models_fetch_of_an_unknown_model_lists_the_known_ones(env: Env) -> None:
    result = invoke(env, "models", "fetch", "dinov9-huge")
    assert_clean_failure(result)
    assert "unknown model 'dinov9-huge'; known models: dinov2-vitb14" in result.stderr


# --- ingest ---------------------------------------------------------------------------------


def test_ingest_folder_stores_good_images_and_reports_bad_ones(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    folder = write_photo_folder(tmp_path / "photos")

    result = invoke(env, "ingest", folder, "--no-progress")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ingested 5, skipped 0 (already stored), failed 3 in ")
    failures = result.stdout.splitlines()[1:]
    for item_id, reason in BAD_FOLDER_ITEMS.items():
        assert any(line.startswith(f"  failed {item_id} [{reason}] file://") for line in failures)
    assert len(failures) == 3
    assert RANDOM_WARNING in result.stderr
    assert RANDOM_WARNING not in result.stdout
    assert point_count(settings) == len(GOOD_FOLDER_ITEMS)


def test_ingest_folder_reports_files_that_would_share_an_item_id(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    write_picture(tmp_path / "shots" / "photo.jpg", 0)
    write_picture(tmp_path / "shots" / "photo.png", 1)

    result = invoke(env, "ingest", tmp_path / "shots", "--no-progress")

    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("  note: ")]
    assert len(notes) == 2, result.stdout
    pairs = (("photo.jpg", "photo.png"), ("photo.png", "photo.jpg"))
    for note, (mine, theirs) in zip(notes, pairs, strict=True):
        assert note.startswith(f"  note: {mine} is item {mine!r}")
        assert theirs in note
    assert "ingested 2, skipped 0 (already stored), failed 0 " in result.stdout
    assert point_count(settings) == 2


def test_ingest_twice_skips_what_is_stored(env: Env, settings: Settings, tmp_path: Path) -> None:
    folder = write_photo_folder(tmp_path / "photos")
    invoke(env, "ingest", folder, "--no-progress")

    again = invoke(env, "ingest", folder, "--no-progress")

    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("ingested 0, skipped 5 (already stored), failed 3 in ")
    assert point_count(settings) == 5


def test_ingest_trial_run_with_limit_then_everything(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    for index in range(8):
        write_picture(tmp_path / "shots" / f"{index}.jpg", index)

    trial = invoke(env, "ingest", tmp_path / "shots", "--limit", "3", "--batch-size", "2")
    assert trial.exit_code == 0, trial.output
    assert trial.stdout.startswith("ingested 3, skipped 0 (already stored), failed 0 ")
    assert point_count(settings) == 3

    full = invoke(env, "ingest", tmp_path / "shots", "--no-progress")
    assert full.stdout.startswith("ingested 5, skipped 3 (already stored), failed 0 ")
    assert point_count(settings) == 8


def test_ingest_after_a_reindex_goes_to_the_alias_model(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    # The alias names the current model once a reindex switched it; local ingestion follows
    # it as the workers do, or new images would land in the collection searches left.
    ModelRegistry(settings.models_dir).register(
        TEST_MODEL_DIR / "model.onnx", "tiny-next", random_weights=True
    )
    write_picture(tmp_path / "first" / "a.jpg", 0)
    invoke(env, "ingest", tmp_path / "first", "--no-progress", "--model", "tiny-next")
    store = open_store(settings)
    try:
        store.set_current("tiny-next")
    finally:
        store.close()
    write_picture(tmp_path / "later" / "b.jpg", 1)

    result = invoke(env, "ingest", tmp_path / "later", "--no-progress")

    assert result.exit_code == 0, result.output
    assert point_count(settings, "tiny-next") == 2
    assert point_count(settings, TEST_MODEL_ID) == 0


def test_ingest_limit_must_be_positive(env: Env, tmp_path: Path) -> None:
    result = invoke(env, "ingest", tmp_path, "--limit", "0")
    assert_clean_failure(result, exit_code=2)
    assert "Invalid value for '--limit'" in result.stderr


def test_ingest_catalog_reports_bad_rows_and_ingests_the_rest(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    csv_path, images = write_catalog(tmp_path / "shop")
    write_picture(tmp_path / "shop" / "outside.jpg", 30)
    rows = [catalog_row(i) for i in range(CATALOG_SIZE)]
    rows += [
        {**catalog_row(0), "item_id": ""},
        {**catalog_row(0), "item_id": "gone", "image": "gone.jpg"},
        {**catalog_row(0), "item_id": "escape", "image": "../outside.jpg"},
    ]
    write_csv(csv_path, rows)

    result = invoke(env, "ingest", "--catalog", csv_path, "--images", images, "--no-progress")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ingested {CATALOG_SIZE}, skipped 0 (already stored), failed 3 ")
    assert lines[1] == "  failed - [bad_row] catalog.csv:14: empty 'item_id'"
    assert lines[2].startswith("  failed gone [not_found] file://")
    assert lines[3] == (
        f"  failed escape [forbidden_path] catalog.csv:16: '../outside.jpg' points outside "
        f"{images.resolve()}"
    )
    assert point_count(settings) == CATALOG_SIZE


def test_ingest_catalog_images_default_to_the_csv_folder(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    csv_path, images = write_catalog(tmp_path / "shop")
    moved = shutil.move(csv_path, images / "catalog.csv")

    result = invoke(env, "ingest", "--catalog", moved, "--no-progress")

    assert result.stdout.startswith(f"ingested {CATALOG_SIZE}, skipped 0")


def test_ingest_catalog_without_the_image_column_is_a_clean_error(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    write_picture(tmp_path / "a.jpg", 0)
    csv_path = write_csv(
        tmp_path / "c.csv", [{"item_id": "a", "photo": "a.jpg"}], ["item_id", "photo"]
    )

    result = invoke(env, "ingest", "--catalog", csv_path, "--images", tmp_path)

    assert_clean_failure(result)
    assert "missing column(s) ['image']" in result.stderr
    assert "--image-column" in result.stderr
    assert point_count(settings) == 0


def test_ingest_catalog_with_chosen_id_and_image_columns(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    write_picture(tmp_path / "a.jpg", 0)
    write_picture(tmp_path / "b.jpg", 1)
    rows = [{"sku": "A", "photo": "a.jpg", "brand": "acme"}, {"sku": "B", "photo": "b.jpg"}]
    csv_path = write_csv(tmp_path / "c.csv", rows, ["sku", "photo", "brand"])

    result = invoke(
        env, "ingest", "--catalog", csv_path, "--id-column", "sku", "--image-column", "photo"
    )

    assert result.exit_code == 0, result.output
    assert "ingested 2, skipped 0" in result.stdout
    hits = search_json(env, "--item", "A")
    assert [hit["item_id"] for hit in hits] == ["B"]


@pytest.mark.parametrize("sources", ["none", "both"])
def test_ingest_needs_exactly_one_of_folder_or_catalog(
    env: Env, tmp_path: Path, sources: str
) -> None:
    csv_path, images = write_catalog(tmp_path)
    args: list[str | Path] = [images, "--catalog", csv_path] if sources == "both" else []

    result = invoke(env, "ingest", *args)

    assert_clean_failure(result, exit_code=2)
    assert "give either a FOLDER or --catalog CSV" in result.stderr


def test_ingest_with_a_model_that_is_not_installed(env: Env, tmp_path: Path) -> None:
    write_picture(tmp_path / "shots" / "a.jpg", 0)
    result = invoke(env, "ingest", tmp_path / "shots", "--model", "dinov2-vitb14")
    assert_clean_failure(result)
    assert "lookalike models fetch dinov2-vitb14" in result.stderr


def test_ingest_into_two_models_and_resume_into_the_second(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    registered = invoke(
        env, "models", "register", TEST_MODEL_DIR / "model.onnx", "--id", "copy", "--random-weights"
    )
    assert registered.exit_code == 0, registered.output
    folder = write_photo_folder(tmp_path / "photos")

    first = invoke(env, "ingest", folder, "--no-progress")  # default model only
    both = invoke(env, "ingest", folder, "--model", TEST_MODEL_ID, "--model", "copy")

    assert first.stdout.startswith("ingested 5, skipped 0")
    assert both.exit_code == 0, both.output
    # The five images were embedded once more (into "copy"), not skipped.
    assert both.stdout.startswith("ingested 5, skipped 0 (already stored), failed 3")
    assert "WARNING: model 'copy' has RANDOM WEIGHTS" in both.stderr
    assert point_count(settings, TEST_MODEL_ID) == 5
    assert point_count(settings, "copy") == 5
    again = invoke(env, "ingest", folder, "--model", TEST_MODEL_ID, "--model", "copy")
    assert again.stdout.startswith("ingested 0, skipped 5")

    listing = invoke(env, "collections").stdout.splitlines()
    assert len(listing) == 2
    assert listing[0].startswith("lookalike__copy ")
    assert listing[1].startswith(f"lookalike__{TEST_MODEL_ID} ")
    assert all("96-d" in line and " 5 points  exact " in line for line in listing)


def test_collections_before_anything_was_ingested(env: Env) -> None:
    result = invoke(env, "collections")
    assert result.exit_code == 0
    assert result.stdout == "no collections yet: run `lookalike ingest`\n"


def test_ingest_refuses_a_collection_built_by_another_model_file(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    for index in range(3):
        write_picture(folder / f"{index}.jpg", index)
    assert invoke(env, "ingest", folder, "--no-progress").exit_code == 0
    fingerprint_before = invoke(env, "collections").stdout.split()[-1]
    # Same weights, one changed docstring: another file, so another model fingerprint.
    changed = onnx.load(str(settings.models_dir / TEST_MODEL_ID / "model.onnx"))
    changed.doc_string = "fine-tuned on our catalog"
    onnx.save(changed, str(tmp_path / "changed.onnx"))
    replaced = invoke(
        env,
        "models",
        "register",
        tmp_path / "changed.onnx",
        "--id",
        TEST_MODEL_ID,
        "--random-weights",
    )
    assert replaced.exit_code == 0, replaced.output
    write_picture(folder / "new.jpg", 3)

    result = invoke(env, "ingest", folder, "--no-progress")

    assert_clean_failure(result)
    assert f"collection 'lookalike__{TEST_MODEL_ID}' was built with {fingerprint_before}" in (
        result.stderr
    )
    assert "lookalike reindex --to NEW_ID" in result.stderr
    assert point_count(settings) == 3


# --- search ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Searchable:
    """A Lookalike with the standard test catalog ingested, shared by the read-only tests."""

    env: Env
    images: Path


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Searchable:
    root = tmp_path_factory.mktemp("shop")
    models_dir = root / "models"
    shutil.copytree(TEST_MODEL_DIR, models_dir / TEST_MODEL_ID)
    env = lookalike_env(root / "data", models_dir)
    csv_path, images = write_catalog(root / "catalog")
    result = invoke(env, "ingest", "--catalog", csv_path, "--images", images, "--no-progress")
    assert result.exit_code == 0, result.output
    return Searchable(env=env, images=images)


def image_of(shop: Searchable, index: int) -> Path:
    return shop.images / catalog_row(index)["image"]


def test_search_by_image_finds_that_item_first(shop: Searchable) -> None:
    hits = search_json(shop.env, "--image", image_of(shop, 4))

    assert hits[0]["item_id"] == "sku-04"
    assert hits[0]["score"] > 0.999
    assert hits[1]["score"] < 0.99
    assert len(hits) == 10  # the default limit


def test_search_json_is_ranked_and_carries_the_payload(shop: Searchable) -> None:
    hits = search_json(shop.env, "--item", "sku-01", "--limit", "50")

    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert len(hits) == CATALOG_SIZE - 1
    first = hits[0]
    assert set(first) >= {"id", "item_id", "score", "payload"}
    row = catalog_row(int(first["item_id"].removeprefix("sku-")))
    assert first["payload"]["brand"] == row["brand"]
    assert first["payload"]["price"] == PRICES[int(row["stock"])]


def test_search_text_output_lists_rank_score_item_and_fields(shop: Searchable) -> None:
    result = invoke(shop.env, "search", "--image", image_of(shop, 2), "--limit", "3")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    rank, score, item_id, *fields = lines[0].split()
    assert (rank, item_id) == ("1.", "sku-02")
    assert float(score) > 0.999
    assert fields == ["brand=initech", "category=shoes", "price=8"]


def test_search_by_item_leaves_the_item_out(shop: Searchable) -> None:
    hits = search_json(shop.env, "--item", "sku-07", "--limit", "100")
    assert "sku-07" not in {hit["item_id"] for hit in hits}
    assert len(hits) == CATALOG_SIZE - 1


def test_search_filter_by_brand(shop: Searchable) -> None:
    hits = search_json(shop.env, "--item", "sku-01", "--filter", "brand=acme", "--limit", "100")
    assert sorted(hit["item_id"] for hit in hits) == ["sku-00", "sku-03", "sku-06", "sku-09"]


def test_search_filter_price_range(shop: Searchable) -> None:
    hits = search_json(shop.env, "--item", "sku-01", "--filter", "price<=10", "--limit", "100")
    prices = {hit["item_id"]: hit["payload"]["price"] for hit in hits}
    assert prices == {"sku-00": 5, "sku-02": 8, "sku-04": 9.99, "sku-06": 10, "sku-08": 3.5}


def test_search_filters_combine(shop: Searchable) -> None:
    hits = search_json(
        shop.env,
        "--item",
        "sku-01",
        "--filter",
        "price>=10",
        "--filter",
        "price<30",
        "--filter",
        "category=bags",
        "--limit",
        "100",
    )
    assert sorted(hit["item_id"] for hit in hits) == ["sku-09"]  # 12.5 is sku-01 itself


def test_search_filter_on_a_decimal_value(shop: Searchable) -> None:
    hits = search_json(shop.env, "--item", "sku-00", "--filter", "price=12.5")
    assert [hit["item_id"] for hit in hits] == ["sku-01"]


def test_search_repeated_filter_key_means_any_of(shop: Searchable) -> None:
    hits = search_json(
        shop.env,
        "--item",
        "sku-00",
        "--filter",
        "brand=globex",
        "--filter",
        "brand=initech",
        "--limit",
        "100",
    )
    assert {hit["payload"]["brand"] for hit in hits} == {"globex", "initech"}
    assert len(hits) == CATALOG_SIZE * 2 // len(BRANDS)


def test_search_group_by_product_gives_one_result_per_product(shop: Searchable) -> None:
    hits = search_json(
        shop.env, "--image", image_of(shop, 5), "--group-by", "product_id", "--limit", "100"
    )

    products = [hit["payload"]["product_id"] for hit in hits]
    assert sorted(products) == sorted(f"p{i}" for i in range(CATALOG_SIZE // 2))
    assert hits[0]["item_id"] == "sku-05"
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_search_warns_about_random_weights_on_stderr(shop: Searchable) -> None:
    result = invoke(shop.env, "search", "--item", "sku-00", "--json")
    assert result.exit_code == 0, result.output
    assert RANDOM_WARNING in result.stderr
    json.loads(result.stdout)  # the warning does not spoil the JSON


def test_search_by_item_needs_no_local_model_file(shop: Searchable, tmp_path: Path) -> None:
    # A search-only machine has the store but not the ONNX file: no warning, no error.
    env = {**shop.env, "LOOKALIKE_MODELS_DIR": str(tmp_path / "no-models")}
    result = invoke(env, "search", "--item", "sku-00", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert len(json.loads(result.stdout)) == 10


def test_search_for_an_unknown_item(shop: Searchable) -> None:
    result = invoke(shop.env, "search", "--item", "sku-99")
    assert_clean_failure(result)
    assert f"no item 'sku-99' in the '{TEST_MODEL_ID}' collection" in result.stderr


def test_search_with_a_file_that_is_not_an_image(shop: Searchable, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")

    result = invoke(shop.env, "search", "--image", notes)

    assert_clean_failure(result)
    assert "not_an_image: not a supported image format" in result.stderr


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("brand", "expected key=value, key<=number or key>=number"),
        ("=acme", "expected key=value, key<=number or key>=number"),
        ("price<=cheap", "<= needs a number"),
    ],
)
def test_search_with_a_bad_filter_is_a_usage_error(
    shop: Searchable, expression: str, complaint: str
) -> None:
    result = invoke(shop.env, "search", "--item", "sku-00", "--filter", expression)
    assert_clean_failure(result, exit_code=2)
    assert "Invalid value for --filter" in result.stderr
    assert complaint in result.stderr


@pytest.mark.parametrize("given", ["none", "both"])
def test_search_needs_exactly_one_of_image_or_item(shop: Searchable, given: str) -> None:
    args: list[str | Path] = ["--image", image_of(shop, 0), "--item", "sku-00"]
    result = invoke(shop.env, "search", *(args if given == "both" else []))
    assert_clean_failure(result, exit_code=2)
    assert "give either --image FILE or --item ID" in result.stderr


def test_search_before_anything_was_ingested(env: Env, tmp_path: Path) -> None:
    picture = write_picture(tmp_path / "a.jpg", 0)
    result = invoke(env, "search", "--image", picture)
    assert_clean_failure(result)
    assert f"no collection for model {TEST_MODEL_ID!r}; ingest some images first" in (result.stderr)


# --- the installed console script -----------------------------------------------------------


def test_installed_console_script_ingests_and_searches(tmp_path: Path) -> None:
    script = shutil.which("lookalike") or str(Path(sys.executable).parent / "lookalike")
    models_dir = tmp_path / "models"
    shutil.copytree(TEST_MODEL_DIR, models_dir / TEST_MODEL_ID)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOOKALIKE_")}
    env.update(
        {k: v for k, v in lookalike_env(tmp_path / "data", models_dir).items() if v is not None}
    )
    folder = tmp_path / "photos"
    for index in range(4):
        write_picture(folder / "shoes" / f"{index}.jpg", index)

    def lookalike(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ingested = lookalike("ingest", folder, "--no-progress")
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("ingested 4, skipped 0 (already stored), failed 0 ")
    assert RANDOM_WARNING in ingested.stderr

    searched = lookalike("search", "--image", folder / "shoes" / "2.jpg", "--json")
    assert searched.returncode == 0, searched.stderr
    hits = json.loads(searched.stdout)
    assert hits[0]["item_id"] == "shoes/2"
    assert hits[0]["score"] > 0.999
    assert len(hits) == 4

    missing = lookalike("search", "--item", "shoes/9")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "no item 'shoes/9'" in missing.stderr
