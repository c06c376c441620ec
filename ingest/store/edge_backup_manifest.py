"""``backup.json``: what a backup of the embedded store holds, and the checks made on it.

A backup folder::

    backup.json                the manifest below (written last, so its presence means done)
    aliases.json               the aliases, as in the store's root
    <collection>/
        collection.json        the model record
        shard/                 the EdgeShard, as of the backup

The manifest lists every file with its size and sha256 and every collection with its model
and its exact point count, read from the copied shard; ``restore`` checks all of them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import BackupError, CollectionMismatch
from ingest.store.edge_backup_files import tree
from ingest.store.edge_shards import ALIASES_FILE, read_json, read_record

FORMAT: Literal["lookalike-edge-backup"] = "lookalike-edge-backup"
VERSION = 1
MANIFEST_FILE = "backup.json"

# A folder directly in the root, never a hidden (transient) one, never a path.
_COLLECTION_NAME = r"^[^./\x00][^/\x00]*$"


class BackupFile(BaseModel):
    """One file of the backup: its path in the backup folder, its size and sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BackedUpCollection(BaseModel):
    """One collection of the backup: its model, exact point count and files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_COLLECTION_NAME)
    model_id: str
    model_fingerprint: str
    dimension: int = Field(gt=0)
    points: int = Field(ge=0)
    files: tuple[BackupFile, ...]

    @property
    def size(self) -> int:
        """Bytes of its files (holes included: what they read as)."""
        return sum(file.size for file in self.files)


class BackupManifest(BaseModel):
    """Everything a restore needs to trust a backup folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["lookalike-edge-backup"] = FORMAT
    version: int = VERSION
    created_at: datetime
    source: str = Field(description="The store root it was taken from (for people).")
    engine: str = Field(description="Version of qdrant-edge-py that wrote the shards.")
    aliases: dict[str, str]
    collections: tuple[BackedUpCollection, ...]
    files: tuple[BackupFile, ...] = Field(description="The files outside collections.")

    @property
    def size(self) -> int:
        """Bytes of every file of the backup but the manifest."""
        return sum(c.size for c in self.collections) + sum(f.size for f in self.files)

    @property
    def points(self) -> int:
        """Points in all its collections."""
        return sum(c.points for c in self.collections)

    def every_file(self) -> dict[str, BackupFile]:
        """Every listed file by its path."""
        listed = [*self.files, *(file for c in self.collections for file in c.files)]
        return {file.path: file for file in listed}


def read_manifest(source: Path) -> BackupManifest:
    """The manifest of a backup folder; ``BackupError`` if it is not one this code reads."""
    if not source.is_dir():
        raise BackupError(f"{source} is not a folder: nothing to restore from")
    path = source / MANIFEST_FILE
    if not path.is_file():
        raise BackupError(
            f"{source} is not a complete Lookalike backup: it has no {MANIFEST_FILE} (a "
            "backup writes it last)"
        )
    data = read_json(path)
    if data is None or data.get("format") != FORMAT:
        raise BackupError(f"{path} is not the manifest of a Lookalike store backup")
    if data.get("version") != VERSION:
        raise BackupError(
            f"{path} has format version {data.get('version')!r}; this Lookalike reads version "
            f"{VERSION} only"
        )
    try:
        return BackupManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BackupError(f"{path} is not a valid manifest: {where}: {first['msg']}") from None


def check_contents(source: Path, manifest: BackupManifest) -> None:
    """The backup's folders, files, sizes and records are the manifest's (checksums are
    compared while the files are copied, so each file is read once)."""
    names = [c.name for c in manifest.collections]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise BackupError(f"{source}: collection {duplicated[0]!r} is listed twice")
    for collection in manifest.collections:
        if not (source / collection.name).is_dir():
            raise BackupError(
                f"{source} is incomplete: collection {collection.name!r} is listed in "
                f"{MANIFEST_FILE} but its folder is missing"
            )
        stray = [f.path for f in collection.files if not f.path.startswith(f"{collection.name}/")]
        if stray:
            raise BackupError(f"{source}: {stray[0]} is listed under {collection.name!r}")
    if [file.path for file in manifest.files] != [ALIASES_FILE]:
        raise BackupError(f"{source}: {MANIFEST_FILE} must list {ALIASES_FILE} and nothing else")
    _check_files(source, manifest)
    for collection in manifest.collections:
        _check_record(source, collection)
    unknown = sorted(set(manifest.aliases.values()) - set(names))
    if unknown:
        raise BackupError(f"{source}: an alias points at {unknown[0]!r}, which is not in it")
    if read_json(source / ALIASES_FILE) != {"aliases": manifest.aliases}:
        raise BackupError(f"{source}: {ALIASES_FILE} holds other aliases than {MANIFEST_FILE}")


def _check_files(source: Path, manifest: BackupManifest) -> None:
    """Exactly the listed files are there, each of its listed size."""
    listed = manifest.every_file()
    _, files = tree(source)
    present = {PurePosixPath(file).as_posix() for file in files} - {MANIFEST_FILE}
    missing = sorted(set(listed) - present)
    if missing:
        raise BackupError(
            f"{source} is incomplete: {missing[0]} is listed in {MANIFEST_FILE} but missing"
            + (f" (and {len(missing) - 1} more files)" if len(missing) > 1 else "")
        )
    extra = sorted(present - set(listed))
    if extra:
        raise BackupError(f"{source}: {extra[0]} is not listed in {MANIFEST_FILE}")
    for path, file in listed.items():
        size = (source / path).stat().st_size
        if size != file.size:
            raise BackupError(
                f"{source} is corrupt: {path} has {size} bytes, {MANIFEST_FILE} says {file.size}"
            )


def _check_record(source: Path, collection: BackedUpCollection) -> None:
    """The collection's own record names the model the manifest says."""
    try:
        recorded = read_record(source / collection.name)
    except CollectionMismatch:
        raise BackupError(
            f"{source}: {collection.name}/collection.json is not a Lookalike model record"
        ) from None
    listed = (collection.model_id, collection.model_fingerprint, collection.dimension)
    if (recorded.model_id, recorded.fingerprint, recorded.dimension) != listed:
        raise BackupError(
            f"{source}: {collection.name}/collection.json names another model than "
            f"{MANIFEST_FILE} ({recorded.model_id} {recorded.fingerprint})"
        )


def manifest_json(manifest: BackupManifest) -> dict[str, object]:
    """The manifest as the JSON object written to ``backup.json``."""
    data: dict[str, object] = json.loads(manifest.model_dump_json())
    return data
