"""`lookalike store backup|restore`: save the embedded vector store to a folder, and back."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from ingest.store.edge_backup import backup, restore
from ingest.store.edge_backup_files import disk_usage
from ingest.store.edge_backup_manifest import BackedUpCollection, BackupManifest
from ingest.store.migration import legacy_store
from schemas.settings import Settings
from search_api.cli.common import friendly_errors, settings_of
from search_api.cli.migrate import open_store_migrating

F = TypeVar("F", bound=Callable[..., Any])

OPERATIONS_DOC = "docs/operations.md#backup-and-restore"


def _files_errors(command: F) -> F:
    """A full disk or a folder without permission is one line too, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OSError as error:
            raise click.ClickException(str(error)) from error

    return wrapper  # type: ignore[return-value]


def _edge_root(settings: Settings) -> Path:
    """The embedded store's root; refused when the store is a Qdrant server."""
    if settings.qdrant_url:
        raise click.ClickException(
            "LOOKALIKE_QDRANT_URL is set: a Qdrant server is backed up through Qdrant's "
            f"snapshot API, not by this command; see {OPERATIONS_DOC}"
        )
    return settings.resolved_store_path()  # where EdgeStore.from_settings keeps it


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _print_collections(manifest: BackupManifest) -> None:
    current = set(manifest.aliases.values())
    for collection in manifest.collections:
        click.echo(_line(collection, collection.name in current))
    for alias, name in sorted(manifest.aliases.items()):
        click.echo(f"  alias {alias} -> {name}")


def _line(collection: BackedUpCollection, current: bool) -> str:
    return (
        f"  {collection.name:<32} {collection.points:>9} points  {collection.dimension:>4}-d"
        f"  {_size(collection.size):>9}  model {collection.model_id}"
        + ("  (current)" if current else "")
    )


@click.group()
def store() -> None:
    """The embedded vector store (LOOKALIKE_STORE_PATH, <data dir>/edge): backup, restore,
    migrate.

    Each needs the store closed: stop `lookalike up` (or whatever process has it open) first.
    A Qdrant server (LOOKALIKE_QDRANT_URL) is backed up with Qdrant's snapshots instead.
    """


@store.command("backup")
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--progress/--no-progress", default=True, help="A progress bar on stderr.")
@click.pass_context
@friendly_errors
@_files_errors
def store_backup(ctx: click.Context, target: Path, progress: bool) -> None:
    """Save the store's collections and aliases into TARGET.

    TARGET must be a new or an empty folder. Copies each collection's record and shard,
    counts its points, writes backup.json with every file's sha256; TARGET appears only once
    all of it is written.
    """
    root = _edge_root(settings_of(ctx))
    manifest = backup(root, target, progress=progress)
    click.echo(
        f"saved {len(manifest.collections)} collection(s), {manifest.points} points, "
        f"{_size(manifest.size)} ({_size(disk_usage(target))} on disk) from {root} to {target}"
    )
    _print_collections(manifest)


@store.command("restore")
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Put the backup in place of the collections the store holds (deleted afterwards).",
)
@click.option("--progress/--no-progress", default=True, help="A progress bar on stderr.")
@click.pass_context
@friendly_errors
@_files_errors
def store_restore(ctx: click.Context, source: Path, replace: bool, progress: bool) -> None:
    """Check the backup in SOURCE, then restore it into the store.

    Checks the manifest, every file's size and sha256 and every shard's exact point count
    before anything changes; refuses a store that holds collections unless --replace.
    """
    root = _edge_root(settings_of(ctx))
    restored = restore(source, root, replace=replace, progress=progress)
    manifest = restored.manifest
    click.echo(
        f"restored {len(manifest.collections)} collection(s), {manifest.points} points, "
        f"{_size(manifest.size)} from {source} (taken {manifest.created_at:%Y-%m-%d %H:%M} "
        f"UTC) into {root}"
    )
    _print_collections(manifest)
    if restored.replaced:
        click.echo(f"replaced and deleted: {', '.join(restored.replaced)}")


@store.command("migrate")
@click.option("--progress/--no-progress", default=True, help="A progress bar per collection.")
@click.pass_context
@friendly_errors
def store_migrate(ctx: click.Context, progress: bool) -> None:
    """Move a store written by earlier versions (<data dir>/qdrant) into the embedded store.

    Copies every collection point for point, with the alias, checks the counts and renames
    the old folder to qdrant.migrated; `lookalike up` does the same by itself when it starts.
    """
    settings = settings_of(ctx)
    _edge_root(settings)
    if legacy_store(settings) is None:
        click.echo(f"nothing to migrate: no old-format store in {settings.data_dir}")
        return
    open_store_migrating(settings, progress=progress).close()
