"""Backup and restore of the embedded store: whole collections, checked, all or nothing.

Both take the root with ``RootOwner``, so they refuse, in the owner's one line, a store that
``lookalike up`` (or any process) has open: a shard copied while it is written could be torn,
and a shard replaced under an open store would be lost. Stop the owner first.

``backup`` copies each collection's ``collection.json`` and ``shard/`` and the aliases into
a folder next to the target, counts the points of every copied shard, hashes every file,
writes ``backup.json`` (``edge_backup_manifest``) and only then renames the folder to the
target: a half-written backup never looks complete. Transient folders (``shard.indexing``,
``shard.retired``, ``.staging-*``, ``.trash-*``), ``lock`` and ``owner.pid`` stay behind.

``restore`` checks the backup (manifest, folders, files, sizes and records first; checksums
and exact point counts on the staged copy, in ``<root>/.staging-restore-*``) before anything
in the root changes; then renames the collections into place and writes the aliases. With
``replace``, the old collections are moved to ``<root>/.replaced-*`` first and deleted only
once the new ones are in place; a crash in between leaves them there, to be moved back.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Never

import qdrant_edge as edge
from tqdm import tqdm

from ingest.errors import BackupError, CollectionMismatch
from ingest.store.edge_backup_files import copy_file, copy_tree, file_sha256, fsync_tree, tree
from ingest.store.edge_backup_manifest import (
    MANIFEST_FILE,
    BackedUpCollection,
    BackupFile,
    BackupManifest,
    check_contents,
    manifest_json,
    read_manifest,
)
from ingest.store.edge_shards import (
    ALIASES_FILE,
    RECORD_FILE,
    SHARD,
    STAGING_PREFIX,
    AliasManifest,
    RootOwner,
    fsync_dir,
    load_shard,
    read_record,
    recover,
    remove_tree,
    write_json_atomic,
)

REPLACED_PREFIX = ".replaced-"


@dataclass(frozen=True)
class Restored:
    """What a restore put in place, and the collections it replaced."""

    manifest: BackupManifest
    replaced: tuple[str, ...]


def collection_folders(root: Path) -> list[Path]:
    """The Lookalike collections in a root, by name (transient and foreign folders left out)."""
    found = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not (folder / RECORD_FILE).is_file():
            continue
        try:
            read_record(folder)
        except CollectionMismatch:
            continue  # not built by Lookalike: the store ignores it, and so do backups
        found.append(folder)
    return found


def _count(shard_path: Path, name: str) -> int:
    """Exact points of a (closed) shard, opened for the count only."""
    try:
        shard = load_shard(shard_path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackupError(f"the shard of collection {name!r} does not load: {first}") from exc
    try:
        return shard.count(edge.CountRequest(exact=True))
    finally:
        shard.close()


@contextmanager
def _owning(root: Path) -> Iterator[RootOwner]:
    owner = RootOwner(root)  # refuses, in one line naming its pid, a root someone owns
    try:
        yield owner
    finally:
        owner.release()


def _bar(total: int, description: str, progress: bool) -> tqdm[Never]:
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=description,
        disable=not progress,
    )


# --- backup -------------------------------------------------------------------------------


def _check_target(root: Path, target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"backup target {target} exists and is not empty: name a new folder")
    if target.resolve().is_relative_to(root.resolve()):
        raise BackupError(f"backup target {target} is inside the store {root}: put it elsewhere")


def backup(root: Path, target: Path, *, progress: bool = True) -> BackupManifest:
    """Copy every collection and the aliases of the store at ``root`` into ``target``."""
    root, target = Path(root).absolute(), Path(target).absolute()
    if not root.is_dir():
        raise BackupError(f"there is no embedded store at {root}: nothing to back up")
    _check_target(root, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _owning(root):
        folders = collection_folders(root)
        if not folders:
            raise BackupError(f"the store at {root} has no collections: nothing to back up")
        partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex}")
        partial.mkdir()
        try:
            manifest = _write_backup(root, folders, partial, progress)
            fsync_tree(partial)
            os.rename(partial, target)  # over an empty folder too: rename(2) allows it
            fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return manifest


def _write_backup(
    root: Path, folders: Sequence[Path], partial: Path, progress: bool
) -> BackupManifest:
    for folder in folders:
        recover(folder)  # an interrupted index swap: what opening the store would do first
    sizes = [
        (folder / file).stat().st_size
        for folder in folders
        for file in [Path(RECORD_FILE), *(SHARD / f for f in tree(folder / SHARD)[1])]
    ]
    with _bar(sum(sizes), "backup", progress) as bar:
        for folder in folders:
            (partial / folder.name).mkdir()
            copy_file(folder / RECORD_FILE, partial / folder.name / RECORD_FILE, bar.update)
            copy_tree(folder / SHARD, partial / folder.name / SHARD, bar.update)
    collections = [folder.name for folder in folders]
    aliases = {k: v for k, v in AliasManifest(root).read().items() if v in collections}
    AliasManifest(partial).write(aliases)
    backed_up = []
    for folder in folders:
        # Counted on the copy: that is what a restore will get. Loading it rewrites a few
        # small journal files, so the files are hashed after it.
        points = _count(partial / folder.name / SHARD, folder.name)
        recorded = read_record(partial / folder.name)
        backed_up.append(
            BackedUpCollection(
                name=folder.name,
                model_id=recorded.model_id,
                model_fingerprint=recorded.fingerprint,
                dimension=recorded.dimension,
                points=points,
                files=tuple(_listed(partial, partial / folder.name)),
            )
        )
    manifest = BackupManifest(
        created_at=datetime.now(UTC),
        source=str(root),
        engine=importlib.metadata.version("qdrant-edge-py"),
        aliases=aliases,
        collections=tuple(backed_up),
        files=(_entry(partial, Path(ALIASES_FILE)),),
    )
    write_json_atomic(partial / MANIFEST_FILE, manifest_json(manifest))
    return manifest


def _entry(backup_folder: Path, relative: Path) -> BackupFile:
    path = backup_folder / relative
    return BackupFile(
        path=PurePosixPath(relative).as_posix(),
        size=path.stat().st_size,
        sha256=file_sha256(path),
    )


def _listed(backup_folder: Path, folder: Path) -> Iterator[BackupFile]:
    for file in tree(folder)[1]:
        yield _entry(backup_folder, folder.relative_to(backup_folder) / file)


# --- restore ------------------------------------------------------------------------------


def restore(source: Path, root: Path, *, replace: bool = False, progress: bool = True) -> Restored:
    """Put a backup's collections and aliases into the store at ``root``, after checking it.

    Refuses a root that holds collections unless ``replace``; on any refusal or failed
    check, nothing in the root changes.
    """
    source, root = Path(source).absolute(), Path(root).absolute()
    manifest = read_manifest(source)
    check_contents(source, manifest)
    created = not root.exists()
    try:
        with _owning(root):
            existing = collection_folders(root)
            _check_root(root, manifest, existing, replace)
            staging = root / f"{STAGING_PREFIX}restore-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                _stage(source, staging, manifest, progress)
                _put_in_place(root, staging, manifest, existing)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        if created:  # a root this restore made holds nothing anyone had before
            shutil.rmtree(root, ignore_errors=True)
        raise
    return Restored(manifest, tuple(folder.name for folder in existing))


def _check_root(
    root: Path, manifest: BackupManifest, existing: Sequence[Path], replace: bool
) -> None:
    if existing and not replace:
        names = ", ".join(folder.name for folder in existing)
        raise BackupError(
            f"the embedded store at {root} already holds collections ({names}): restore with "
            "--replace to put the backup in their place, or restore into an empty data dir"
        )
    taken = {folder.name for folder in existing}
    for collection in manifest.collections:
        if (root / collection.name).exists() and collection.name not in taken:
            raise BackupError(
                f"{root / collection.name} is in the way and is not a Lookalike collection: "
                "move it away first"
            )


def _stage(source: Path, staging: Path, manifest: BackupManifest, progress: bool) -> None:
    """Copy the collections into ``staging``, comparing checksums, then count their points."""
    listed = manifest.every_file()

    def check(path: Path, digest: str) -> None:
        expected = listed[path.as_posix()]
        if digest != expected.sha256:
            raise BackupError(
                f"{source} is corrupt: {path.as_posix()} does not match its sha256 in "
                f"{MANIFEST_FILE} (nothing was restored)"
            )

    aliases_digest = file_sha256(source / ALIASES_FILE)
    check(Path(ALIASES_FILE), aliases_digest)
    with _bar(manifest.size, "restore", progress) as bar:
        for collection in manifest.collections:
            name = Path(collection.name)

            def in_backup(path: Path, digest: str, name: Path = name) -> None:
                check(name / path, digest)

            copy_tree(source / name, staging / name, bar.update, in_backup)
    for collection in manifest.collections:
        points = _count(staging / collection.name / SHARD, collection.name)
        if points != collection.points:
            raise BackupError(
                f"{source} does not hold what its manifest says: collection "
                f"{collection.name!r} has {points} points, {MANIFEST_FILE} says "
                f"{collection.points} (nothing was restored)"
            )
    fsync_tree(staging)


def _put_in_place(
    root: Path, staging: Path, manifest: BackupManifest, existing: Sequence[Path]
) -> None:
    """Swap the staged collections in (the old ones out) and write the aliases, or undo."""
    replaced = root / f"{REPLACED_PREFIX}{uuid.uuid4().hex}"
    moved_out: list[Path] = []
    moved_in: list[str] = []
    try:
        if existing:
            replaced.mkdir()
            for folder in existing:
                os.rename(folder, replaced / folder.name)
                moved_out.append(folder)
        for collection in manifest.collections:
            os.rename(staging / collection.name, root / collection.name)
            moved_in.append(collection.name)
        AliasManifest(root).write(manifest.aliases)  # atomic: the old aliases or the new
        fsync_dir(root)
    except BaseException:
        for name in reversed(moved_in):
            os.rename(root / name, staging / name)
        for folder in reversed(moved_out):
            os.rename(replaced / folder.name, folder)
        if replaced.exists():
            replaced.rmdir()
        fsync_dir(root)
        raise
    if existing:
        remove_tree(replaced)  # the new collections are in place: now the old ones go
