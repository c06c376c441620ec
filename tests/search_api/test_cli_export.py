"""`lookalike export`: the embedded store's points into a file; every refusal is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.store.current import open_store
from schemas.points import PayloadFilter
from schemas.settings import Settings
from tests.ingest.store_support import held_elsewhere
from tests.ingest.test_vector_export import DIM, MODEL_ID, add_points, read_jsonl, stored
from tests.search_api.test_cli import Env, assert_clean_failure, invoke, lookalike_env


@pytest.fixture
def env(settings: Settings) -> Env:
    """The CLI's environment on a data dir holding 90 synthetic points (store closed again)."""
    store = open_store(settings)
    try:
        add_points(store, 90)
    finally:
        store.close()
    return lookalike_env(settings.data_dir, settings.models_dir)


def expected(settings: Settings, **pairs: str) -> list[dict[str, object]]:
    """The store's own scroll of the (filtered) points, store closed again."""
    store = open_store(settings)
    try:
        return stored(store, PayloadFilter.from_pairs(dict(pairs)) if pairs else None)
    finally:
        store.close()


def test_a_filtered_jsonl_export(env: Env, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "acme.jsonl"

    result = invoke(
        env, "export", "--model", MODEL_ID, "--filter", "brand=acme", "--no-progress", out
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == f"exported 30 points, {out.stat().st_size:,} bytes, to {out}\n"
    assert read_jsonl(out) == expected(settings, brand="acme")


def test_npy_writes_the_matrix_and_its_sidecar_and_says_so(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.npy"

    result = invoke(env, "export", "--format", "npy", "--model", MODEL_ID, out)

    assert result.exit_code == 0, result.output
    sidecar = tmp_path / "vectors.ids.jsonl"
    size = out.stat().st_size + sidecar.stat().st_size
    assert result.stdout == f"exported 90 points, {size:,} bytes, to {out} and {sidecar}\n"
    assert "export: 100%" in result.stderr  # the progress bar, on stderr
    want = expected(settings)
    assert np.load(out).tolist() == [row["vector"] for row in want]
    assert [row["id"] for row in read_jsonl(sidecar)] == [row["id"] for row in want]


def test_the_format_comes_from_the_suffix(env: Env, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "points.parquet"
    result = invoke(env, "export", "--model", MODEL_ID, "--no-progress", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 90
    assert table.column("id").to_pylist() == [row["id"] for row in expected(settings)]
    assert len(table.column("vector")[0]) == DIM


def test_an_existing_file_needs_force(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "points.jsonl"
    out.write_text("keep me\n")

    refused = invoke(env, "export", "--model", MODEL_ID, "--no-progress", out)

    assert_clean_failure(refused)
    assert refused.stderr == f"Error: {out} exists: give --force to replace it\n"
    assert out.read_text() == "keep me\n"
    replaced = invoke(env, "export", "--model", MODEL_ID, "--no-progress", "--force", out)
    assert replaced.exit_code == 0, replaced.output
    assert len(out.read_text().splitlines()) == 90


def test_an_existing_sidecar_needs_force_too(env: Env, tmp_path: Path) -> None:
    (tmp_path / "vectors.ids.jsonl").write_text("{}\n")
    result = invoke(env, "export", "--model", MODEL_ID, tmp_path / "vectors.npy")
    assert_clean_failure(result)
    assert "vectors.ids.jsonl exists: give --force" in result.stderr
    assert not (tmp_path / "vectors.npy").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv", "out.jsonl"], "'csv' is not one of 'jsonl', 'npy', 'parquet'"),
        (["out.txt"], "give --format (jsonl, npy, parquet): the name 'out.txt' does not say"),
        (["--filter", "brand", "out.jsonl"], "'brand': expected key=value"),
        (["--filter", "price<=cheap", "out.jsonl"], "<= needs a number"),
    ],
    ids=["unknown format", "no format", "bad filter", "range on text"],
)
def test_usage_errors_are_one_line(env: Env, tmp_path: Path, args: list[str], message: str) -> None:
    paths = [arg.replace("out", str(tmp_path / "out")) for arg in args]
    result = invoke(env, "export", "--model", MODEL_ID, *paths)
    assert_clean_failure(result, exit_code=2)
    assert message in result.stderr
    assert list(tmp_path.glob("out*")) == []


def test_an_unknown_model_is_one_line(env: Env, tmp_path: Path) -> None:
    result = invoke(env, "export", "--model", "nope", "--no-progress", tmp_path / "x.jsonl")
    assert_clean_failure(result)
    assert result.stderr == "Error: no collection for model 'nope'; ingest some images first\n"
    assert list(tmp_path.glob("x*")) == []


def test_a_missing_folder_is_one_line(env: Env, tmp_path: Path) -> None:
    result = invoke(env, "export", "--model", MODEL_ID, tmp_path / "no" / "x.jsonl")
    assert_clean_failure(result)
    assert result.stderr == f"Error: no folder {tmp_path / 'no'}: create it first\n"


def test_a_store_owned_by_another_process_is_one_line(
    env: Env, settings: Settings, tmp_path: Path
) -> None:
    with held_elsewhere(settings.resolved_store_path()) as pid:
        result = invoke(env, "export", "--model", MODEL_ID, tmp_path / "x.jsonl")
    assert_clean_failure(result)
    assert f"already open in process {pid}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.glob("x*")) == []
