"""Backup and restore of the embedded store: everything comes back, bad backups change nothing.

Real EdgeStores on disk, a real second process where ownership matters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.errors import BackupError, StoreUnavailable
from ingest.store import edge_backup
from ingest.store.edge import EdgeStore
from ingest.store.edge_backup import backup, restore
from ingest.store.edge_backup_files import copy_file, file_sha256
from schemas.models import ModelManifest, ModelSpec
from schemas.points import NewPoint
from tests.ingest.store_support import held_elsewhere

DIM = 8
SIZES = {"alpha": 300, "beta": 200}


def manifest(model_id: str) -> ModelManifest:
    sha = hashlib.sha256(model_id.encode()).hexdigest()
    spec = ModelSpec(id=model_id, family="custom", dimension=DIM)
    return ModelManifest(spec=spec, sha256=sha, source="test")


def points(n: int, *, seed: int) -> list[NewPoint]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM))
    return [
        NewPoint(
            item_id=f"item-{seed}-{i:04d}",
            image_sha256=f"{seed:08x}{i:056x}",
            vector=vectors[i].tolist(),
            source_uri=f"file:///catalog/{seed}/{i}.jpg",
            metadata={"brand": ("acme", "globex", "hooli")[i % 3], "price": float(i)},
        )
        for i in range(n)
    ]


def fill(root: Path, sizes: dict[str, int] = SIZES, *, current: str = "alpha") -> None:
    """A store with one collection per model in ``sizes`` and the alias on ``current``."""
    store = EdgeStore(root)
    try:
        for seed, (model_id, n) in enumerate(sizes.items(), start=1):
            store.upsert(manifest(model_id), points(n, seed=seed))
        store.delete_item(current, f"item-1-{0:04d}")  # a deletion in the WAL too
        store.set_current(current)
    finally:
        store.close()


def contents(root: Path) -> dict[str, Any]:
    """Everything a store answers about itself: collections, every point, the alias."""
    store = EdgeStore(root)
    try:
        found: dict[str, Any] = {"current": store.current_model(), "collections": {}}
        for info in store.collections():
            stored, offset = [], None
            while True:
                page, offset = store.scroll(
                    info.model_id, limit=128, offset=offset, with_vectors=True
                )
                stored += [p.model_dump() for p in page]
                if offset is None:
                    break
            found["collections"][info.name] = {"info": info.model_dump(), "points": stored}
        return found
    finally:
        store.close()


def files_of(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under a folder with its size and sha256: to see that nothing changed."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source") / "edge"
    fill(root)
    return root


@pytest.fixture(scope="module")
def expected(source: Path) -> dict[str, Any]:
    return contents(source)


@pytest.fixture
def saved(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "backup"
    backup(source, target, progress=False)
    return target


def edit_manifest(backup_folder: Path, change: Any) -> None:
    path = backup_folder / "backup.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- backup then restore ------------------------------------------------------------------


def test_restore_into_a_fresh_root_gives_back_every_point_and_the_alias(
    saved: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh" / "edge"

    restored = restore(saved, fresh, progress=False)

    assert contents(fresh) == expected
    assert expected["current"] == "alpha"
    counts = {name: c["info"]["points"] for name, c in expected["collections"].items()}
    assert counts == {"lookalike__alpha": 299, "lookalike__beta": 200}
    assert {c.name: c.points for c in restored.manifest.collections} == counts
    assert restored.replaced == ()
    # Nothing transient left in the root: only the store's own files.
    assert sorted(p.name for p in fresh.iterdir()) == [
        "aliases.json",
        "lock",
        "lookalike__alpha",
        "lookalike__beta",
    ]


def test_the_manifest_lists_every_file_with_its_checksum_and_the_shard_counts(
    source: Path, tmp_path: Path
) -> None:
    # Leftovers the backup must not take: a build's copy, a half-made collection, the lock.
    (source / "lookalike__alpha" / "shard.indexing").mkdir()
    (source / "lookalike__alpha" / "shard.indexing" / "junk").write_bytes(b"x")
    # A half-made collection already has its record (``create_folder``): still not one.
    (source / ".staging-lookalike__gamma-0").mkdir()
    shutil.copy(
        source / "lookalike__beta" / "collection.json", source / ".staging-lookalike__gamma-0"
    )
    target = tmp_path / "backup"
    target.mkdir()  # an empty folder is a fine target
    try:
        made = backup(source, target, progress=False)
    finally:
        shutil.rmtree(source / "lookalike__alpha" / "shard.indexing", ignore_errors=True)
        shutil.rmtree(source / ".staging-lookalike__gamma-0")

    written = json.loads((target / "backup.json").read_text())
    assert written["format"] == "lookalike-edge-backup"
    assert written["version"] == 1
    assert written["created_at"]
    assert written["aliases"] == {"lookalike": "lookalike__alpha"}
    by_name = {c["name"]: c for c in written["collections"]}
    assert {name: c["points"] for name, c in by_name.items()} == {
        "lookalike__alpha": 299,
        "lookalike__beta": 200,
    }
    assert by_name["lookalike__beta"]["model_id"] == "beta"
    assert by_name["lookalike__beta"]["model_fingerprint"] == manifest("beta").fingerprint
    assert by_name["lookalike__beta"]["dimension"] == DIM
    listed = {f["path"]: (f["size"], f["sha256"]) for c in by_name.values() for f in c["files"]}
    listed.update({f["path"]: (f["size"], f["sha256"]) for f in written["files"]})
    on_disk = files_of(target)
    del on_disk["backup.json"]
    assert listed == on_disk
    assert not [p for p in on_disk if "indexing" in p or "staging" in p or "lock" in p]
    assert "lookalike__alpha/collection.json" in on_disk
    assert made.points == 499
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup"]  # no partial folder left


def test_an_interrupted_index_swap_is_undone_before_the_copy(tmp_path: Path) -> None:
    root = tmp_path / "edge"
    fill(root, {"alpha": 50})
    folder = root / "lookalike__alpha"
    shutil.copytree(folder / "shard", tmp_path / "before")
    store = EdgeStore(root)
    store.delete_points("alpha", [p.id for p in store.scroll("alpha", limit=10)[0]])
    store.close()
    # As if killed mid-swap: the untouched shard retired, a changed copy in its place.
    os.rename(tmp_path / "before", folder / "shard.retired")

    made = backup(root, tmp_path / "backup", progress=False)

    assert [c.points for c in made.collections] == [49]
    assert not (folder / "shard.retired").exists()


def test_files_are_copied_with_their_holes_and_hashed_as_read(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as file:  # hole, data, hole, data, hole: 24 MiB, 8 KiB of data
        for offset in (1 << 20, 9 << 20):
            file.seek(offset)
            file.write(b"data" * 1024)
        file.truncate(24 << 20)
    content = sparse.read_bytes()

    digest = copy_file(sparse, tmp_path / "copy", lambda _: None)

    assert (tmp_path / "copy").read_bytes() == content
    assert digest == file_sha256(tmp_path / "copy") == hashlib.sha256(content).hexdigest()
    if sparse.stat().st_blocks * 512 < len(content) // 2:  # the file system keeps holes
        assert (tmp_path / "copy").stat().st_blocks * 512 < len(content) // 2


def test_a_failed_backup_leaves_no_folder_that_looks_like_one(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(edge_backup, "load_shard", broken)
    with pytest.raises(BackupError, match=r"does not load: .*No space left"):
        backup(source, tmp_path / "backup", progress=False)
    assert list(tmp_path.iterdir()) == []
    EdgeStore(source).close()  # the root was released


def test_backup_refuses_a_target_that_is_not_empty(source: Path, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match=r"used exists and is not empty"):
        backup(source, tmp_path / "used", progress=False)
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]


def test_backup_refuses_while_another_process_owns_the_store(source: Path, tmp_path: Path) -> None:
    with held_elsewhere(source) as pid, pytest.raises(StoreUnavailable) as refused:
        backup(source, tmp_path / "backup", progress=False)
    message = str(refused.value)
    assert "\n" not in message
    assert f"already open in process {pid}" in message
    assert "stop that process" in message
    assert list(tmp_path.iterdir()) == []


# --- restore refuses a bad backup, and changes nothing ------------------------------------


def corrupt_a_shard_file(backup_folder: Path) -> None:
    vectors = next((backup_folder / "lookalike__beta" / "shard").rglob("chunk_0.mmap"))
    with vectors.open("r+b") as file:
        first = file.read(16)
        file.seek(0)
        file.write(bytes(b ^ 0xFF for b in first))  # same size, other bytes


def lie_about_a_count(backup_folder: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["collections"][1]["points"] += 1

    edit_manifest(backup_folder, change)


def lose_a_collection(backup_folder: Path) -> None:
    shutil.rmtree(backup_folder / "lookalike__beta")


def forget_the_manifest_version(backup_folder: Path) -> None:
    edit_manifest(backup_folder, lambda data: data.update(version=2))


BAD_BACKUPS = {
    "corrupt shard file": (corrupt_a_shard_file, r"chunk_0.mmap does not match its sha256"),
    "count not matching": (
        lie_about_a_count,
        r"collection 'lookalike__beta' has 200 points, backup.json says 201",
    ),
    "missing collection": (
        lose_a_collection,
        r"incomplete: collection 'lookalike__beta' is listed in backup.json but its folder",
    ),
    "unknown version": (forget_the_manifest_version, r"format version 2; this Lookalike reads"),
}


@pytest.mark.parametrize("damage", list(BAD_BACKUPS))
def test_restore_refuses_a_bad_backup_into_a_fresh_root(
    saved: Path, tmp_path: Path, damage: str
) -> None:
    spoil, message = BAD_BACKUPS[damage]
    spoil(saved)
    fresh = tmp_path / "fresh"
    with pytest.raises(BackupError, match=message) as refused:
        restore(saved, fresh, progress=False)
    assert "\n" not in str(refused.value)
    assert not fresh.exists()


@pytest.mark.parametrize("damage", list(BAD_BACKUPS))
def test_restore_refuses_a_bad_backup_and_leaves_a_filled_root_untouched(
    saved: Path, tmp_path: Path, damage: str
) -> None:
    spoil, message = BAD_BACKUPS[damage]
    spoil(saved)
    other = tmp_path / "other"
    fill(other, {"gamma": 40}, current="gamma")
    before = files_of(other)
    with pytest.raises(BackupError, match=message):
        restore(saved, other, replace=True, progress=False)
    assert files_of(other) == before
    assert sorted(p.name for p in other.iterdir()) == ["aliases.json", "lock", "lookalike__gamma"]


def test_restore_refuses_a_root_that_holds_collections_without_replace(
    saved: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    fill(other, {"gamma": 40}, current="gamma")
    before = files_of(other)
    with pytest.raises(
        BackupError, match=r"already holds collections \(lookalike__gamma\).*--replace"
    ):
        restore(saved, other, progress=False)
    assert files_of(other) == before


def test_restore_with_replace_puts_the_backup_in_place_of_the_old_collections(
    saved: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    fill(other, {"gamma": 40, "alpha": 7}, current="gamma")

    restored = restore(saved, other, replace=True, progress=False)

    assert restored.replaced == ("lookalike__alpha", "lookalike__gamma")
    assert contents(other) == expected  # gamma is gone, alpha is the backup's, alias too
    assert sorted(p.name for p in other.iterdir()) == [
        "aliases.json",
        "lock",
        "lookalike__alpha",
        "lookalike__beta",
    ]


def test_restore_refuses_while_another_process_owns_the_store(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    with held_elsewhere(other) as pid, pytest.raises(StoreUnavailable) as refused:
        restore(saved, other, progress=False)
    assert f"already open in process {pid}" in str(refused.value)
    assert sorted(p.name for p in other.iterdir()) == ["lock"]
