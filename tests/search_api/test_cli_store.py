"""`lookalike store backup|restore`: the store in <data dir>/edge saved and put back; refusals
are one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import local_client
from tests.ingest.store_support import held_elsewhere
from tests.ingest.test_store_backup import contents, fill
from tests.ingest.test_store_edge import MODEL_ID, catalog, manifest
from tests.search_api.test_cli import Env, assert_clean_failure, invoke, lookalike_env


def env_of(data_dir: Path) -> Env:
    return lookalike_env(data_dir, data_dir.parent / "models")


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A data dir whose embedded store holds two collections and the alias."""
    data_dir = tmp_path / "data"
    fill(data_dir / "edge")
    return data_dir


def test_backup_then_restore_into_another_data_dir(filled: Path, tmp_path: Path) -> None:
    target = tmp_path / "saved"

    saved = invoke(env_of(filled), "store", "backup", target, "--no-progress")

    assert saved.exit_code == 0, saved.output
    lines = saved.stdout.splitlines()
    assert lines[0].startswith("saved 2 collection(s), 499 points, ")
    assert f"from {filled / 'edge'} to {target}" in lines[0]
    assert lines[1].split()[:3] == ["lookalike__alpha", "299", "points"]
    assert lines[1].endswith("model alpha  (current)")
    assert lines[2].split()[:3] == ["lookalike__beta", "200", "points"]
    assert lines[2].endswith("model beta")
    assert lines[3].strip() == "alias lookalike -> lookalike__alpha"
    assert json.loads((target / "backup.json").read_text())["version"] == 1

    other = tmp_path / "other"
    restored = invoke(env_of(other), "store", "restore", target, "--no-progress")

    assert restored.exit_code == 0, restored.output
    assert restored.stdout.startswith("restored 2 collection(s), 499 points, ")
    assert f"into {other / 'edge'}" in restored.stdout.splitlines()[0]
    assert contents(other / "edge") == contents(filled / "edge")


def test_restore_into_a_store_with_collections_needs_replace(filled: Path, tmp_path: Path) -> None:
    target = tmp_path / "saved"
    assert invoke(env_of(filled), "store", "backup", target, "--no-progress").exit_code == 0
    other = tmp_path / "other"
    fill(other / "edge", {"gamma": 30}, current="gamma")

    refused = invoke(env_of(other), "store", "restore", target, "--no-progress")

    assert_clean_failure(refused)
    assert "already holds collections (lookalike__gamma)" in refused.stderr
    assert "--replace" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert contents(other / "edge")["current"] == "gamma"

    replaced = invoke(env_of(other), "store", "restore", target, "--replace", "--no-progress")

    assert replaced.exit_code == 0, replaced.output
    assert "replaced and deleted: lookalike__gamma" in replaced.stdout
    assert contents(other / "edge") == contents(filled / "edge")


def test_every_refusal_is_one_line(filled: Path, tmp_path: Path) -> None:
    env = env_of(filled)
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    cases = {
        "exists and is not empty": ("store", "backup", used),
        "is not a complete Lookalike backup": ("store", "restore", used),
        "nothing to back up": ("store", "backup", tmp_path / "x", "--no-progress"),
        "File exists": ("store", "backup", used / "notes.txt" / "saved", "--no-progress"),
    }
    env_empty = env_of(tmp_path / "empty")
    for expected, args in cases.items():
        result = invoke(env_empty if expected == "nothing to back up" else env, *args)
        assert_clean_failure(result)
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_corrupt_backup_is_refused_in_one_line(filled: Path, tmp_path: Path) -> None:
    target = tmp_path / "saved"
    assert invoke(env_of(filled), "store", "backup", target, "--no-progress").exit_code == 0
    record = target / "lookalike__beta" / "collection.json"
    record.write_text(record.read_text().replace('"dimension": 8', '"dimension": 9'))

    result = invoke(env_of(tmp_path / "other"), "store", "restore", target, "--no-progress")

    assert_clean_failure(result)
    assert "lookalike__beta/collection.json names another model" in result.stderr
    assert not (tmp_path / "other" / "edge").exists()


def test_backup_while_the_store_is_open_names_the_owner(filled: Path, tmp_path: Path) -> None:
    with held_elsewhere(filled / "edge") as pid:
        result = invoke(env_of(filled), "store", "backup", tmp_path / "saved", "--no-progress")
    assert_clean_failure(result)
    assert f"already open in process {pid}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_with_a_qdrant_server_the_commands_point_at_its_snapshots(
    tmp_path: Path, command: str
) -> None:
    env = {**env_of(tmp_path / "data"), "LOOKALIKE_QDRANT_URL": "http://127.0.0.1:6333"}

    result = invoke(env, "store", command, tmp_path / "saved")

    assert_clean_failure(result)
    assert "snapshot API" in result.stderr
    assert "docs/operations.md#backup-and-restore" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_migrate_moves_an_old_store_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old = QdrantStore(local_client(str(data_dir / "qdrant")))
    old.upsert(manifest(), catalog(25))
    old.set_current(MODEL_ID)
    old.close()
    env = env_of(data_dir)

    refused = invoke(env, "collections")
    assert_clean_failure(refused)
    assert "run `lookalike store migrate`" in refused.stderr

    moved = invoke(env, "store", "migrate", "--no-progress")
    assert moved.exit_code == 0, moved.output
    assert f"migrated lookalike__{MODEL_ID}: 25 points (counts match)" in moved.stdout
    listing = invoke(env, "collections")
    assert listing.exit_code == 0, listing.output
    assert "25 points  exact    current" in listing.stdout

    again = invoke(env, "store", "migrate")
    assert again.exit_code == 0
    assert again.stdout.startswith("nothing to migrate")
