"""`lookalike evaluate` end to end: labelled sets, real embedding and store, the report.

The metrics themselves are checked against hand-computed cases in test_evaluation_metrics.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ingest.evaluation.datasets import (
    EvaluationInputError,
    Role,
    catalog_images,
    folder_images,
)
from ingest.evaluation.report import last_evaluation, last_picture
from ingest.evaluation.run import evaluate_model
from ingest.models.registry import ModelRegistry
from schemas.evaluation import EvaluationRecord
from schemas.settings import Settings
from tests.ingest.catalog_samples import CATALOG_SIZE, write_catalog, write_picture
from tests.search_api.test_cli import Env, assert_clean_failure, invoke, lookalike_env
from tests.support import TEST_MODEL_ID


@pytest.fixture
def catalog(tmp_path: Path) -> tuple[Path, Path]:
    """The 12-item test catalog: two images per product (``product_id``)."""
    return write_catalog(tmp_path / "catalog")


def _class_folder(root: Path, classes: int, per_class: int) -> Path:
    for label in range(classes):
        for n in range(per_class):
            write_picture(root / f"class-{label}" / f"{n}.png", label * 10 + n)
    return root


def test_a_catalog_labels_every_image_and_each_is_a_query(catalog: tuple[Path, Path]) -> None:
    csv_path, images = catalog
    labelled = catalog_images(csv_path, images, label_column="product_id")
    assert len(labelled) == CATALOG_SIZE
    assert {image.role for image in labelled} == {Role.BOTH}
    assert labelled[0].label == labelled[1].label == "p0"


def test_a_class_folder_is_split_by_seed_into_queries_and_gallery(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "classes", classes=3, per_class=5)
    write_picture(root / "alone" / "0.png", 99)  # a class of one: a distractor in the gallery
    first = folder_images(root, query_fraction=0.2, seed=7)
    again = folder_images(root, query_fraction=0.2, seed=7)
    other = folder_images(root, query_fraction=0.2, seed=8)

    assert [(i.item_id, i.role) for i in first] == [(i.item_id, i.role) for i in again]
    assert [(i.item_id, i.role) for i in first] != [(i.item_id, i.role) for i in other]
    queries = [i for i in first if i.role is Role.QUERY]
    # 20 % of 15 is 3: one query per class (stratified), the rest in the gallery.
    assert sorted(i.label for i in queries) == ["class-0", "class-1", "class-2"]
    assert [i.role for i in first if i.label == "alone"] == [Role.GALLERY]


def test_query_and_gallery_folders_keep_their_roles(tmp_path: Path) -> None:
    for role, count in (("query", 1), ("gallery", 3)):
        _class_folder(tmp_path / "set" / role, classes=2, per_class=count)
    labelled = folder_images(tmp_path / "set")
    assert sum(i.role is Role.QUERY for i in labelled) == 2
    assert sum(i.role is Role.GALLERY for i in labelled) == 6


def test_bad_inputs_are_clear_errors(tmp_path: Path, catalog: tuple[Path, Path]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationInputError, match="no images found"):
        folder_images(tmp_path / "empty")
    with pytest.raises(EvaluationInputError, match="one label only"):
        folder_images(_class_folder(tmp_path / "one", classes=1, per_class=4))
    loose = tmp_path / "loose"
    write_picture(loose / "a.png", 1)
    with pytest.raises(EvaluationInputError, match="not in a class subfolder"):
        folder_images(loose)
    csv_path, images = catalog
    with pytest.raises(EvaluationInputError, match="has no column colour; its columns are"):
        catalog_images(csv_path, images, label_column="colour")


def test_a_catalog_of_near_duplicate_pairs_is_found_by_the_test_model(
    settings: Settings, catalog: tuple[Path, Path]
) -> None:
    csv_path, images = catalog
    labelled = catalog_images(csv_path, images, label_column="product_id")
    manifest = ModelRegistry(settings.models_dir).manifest(TEST_MODEL_ID)

    plain = evaluate_model(settings, manifest, labelled, ks=(1, 5), progress=False)
    flipped = evaluate_model(settings, manifest, labelled, ks=(1, 5), tta=True, progress=False)

    assert plain.images == CATALOG_SIZE
    assert plain.retrieval.queries == CATALOG_SIZE  # every image has its product's other one
    assert plain.duplicates.duplicate_pairs == CATALOG_SIZE // 2
    assert plain.duplicates.distinct_pairs == CATALOG_SIZE * (CATALOG_SIZE - 1) // 2 - 6
    # The two images of a product are distinct pictures: a random model finds some, not all.
    assert 0.0 < plain.retrieval.top_k_accuracy[5] <= 1.0
    # Flip TTA changes the embeddings, so the pair scores move.
    assert flipped.duplicate_pair_scores != plain.duplicate_pair_scores
    # The user's store is never touched: nothing under the data dir's store.
    assert not (settings.data_dir / "qdrant").exists()


def test_the_command_prints_the_table_writes_json_and_the_picture_and_keeps_the_last(
    settings: Settings, catalog: tuple[Path, Path], tmp_path: Path
) -> None:
    csv_path, images = catalog
    env = lookalike_env(settings.data_dir, settings.models_dir)
    out_json, out_png = tmp_path / "numbers.json", tmp_path / "quality.png"
    args: list[str | Path] = ["evaluate", "--catalog", csv_path, "--images", images]
    args += ["--label", "product_id", "--tta", "--json", out_json, "--picture", out_png]
    result = invoke(env, *args, "--no-progress")

    assert result.exit_code == 0, result.output
    header, plain, flipped = result.stdout.splitlines()[:3]
    assert header.split()[:4] == ["model", "tta", "mAP@1", "mAP@5"]
    assert plain.split()[:2] == [TEST_MODEL_ID, "no"]
    assert flipped.split()[:2] == [TEST_MODEL_ID, "yes"]
    records = [EvaluationRecord.model_validate(r) for r in json.loads(out_json.read_text())]
    assert [r.tta for r in records] == [False, True]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    registry = ModelRegistry(settings.models_dir)
    kept = last_evaluation(registry, TEST_MODEL_ID)
    assert kept is not None
    assert kept.tta is False
    assert kept.retrieval == records[0].retrieval
    picture = last_picture(registry, TEST_MODEL_ID)
    assert picture is not None
    assert b"<svg" in picture.read_bytes()[:500]


def test_apply_records_the_calibrated_threshold_in_the_manifest(
    settings: Settings, catalog: tuple[Path, Path]
) -> None:
    csv_path, images = catalog
    env = lookalike_env(settings.data_dir, settings.models_dir)
    registry = ModelRegistry(settings.models_dir)
    assert registry.manifest(TEST_MODEL_ID).calibrated_threshold is None

    result = invoke(
        env,
        "evaluate",
        "--catalog",
        csv_path,
        "--images",
        images,
        "--label",
        "product_id",
        "--apply",
        "--no-progress",
    )

    assert result.exit_code == 0, result.output
    calibrated = registry.manifest(TEST_MODEL_ID).calibrated_threshold
    assert calibrated is not None
    assert f"duplicate threshold set to {calibrated}" in result.stdout
    assert registry.duplicate_threshold(TEST_MODEL_ID) == calibrated


def test_the_command_refuses_bad_input_in_one_line(
    env_for_cli: Env, catalog: tuple[Path, Path], tmp_path: Path
) -> None:
    csv_path, images = catalog
    missing_label = invoke(env_for_cli, "evaluate", "--catalog", csv_path, "--label", "colour")
    unreadable = invoke(env_for_cli, "evaluate", "--catalog", csv_path, "--label", "product_id")
    assert_clean_failure(unreadable)  # the images are not next to the CSV
    assert "none of the 12 images could be read" in unreadable.stderr
    assert "[not_found]" in unreadable.stderr
    assert_clean_failure(missing_label)
    assert "has no column colour" in missing_label.stderr
    one_class = tmp_path / "one"
    shutil.copytree(images, one_class / "only")
    assert_clean_failure(invoke(env_for_cli, "evaluate", one_class))
    no_label = invoke(env_for_cli, "evaluate", "--catalog", csv_path)
    assert no_label.exit_code == 2
    assert "--catalog needs --label COLUMN" in no_label.stderr


@pytest.fixture
def env_for_cli(settings: Settings) -> Env:
    return lookalike_env(settings.data_dir, settings.models_dir)
