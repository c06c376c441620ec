"""Moving an old-format embedded store into Qdrant's engine on the terminal: a bar per
collection, then one line each with its count (checked against the old store)."""

from __future__ import annotations

from typing import Never

import click
from tqdm import tqdm

from ingest.store.base import VectorStore
from ingest.store.current import open_migrated_store
from ingest.store.migration import MIGRATED_FOLDER, MigratedCollection
from schemas.settings import Settings


def open_store_migrating(settings: Settings, *, progress: bool = True) -> VectorStore:
    """The store, migrating an old-format one first (once) and saying what moved."""
    bars: dict[str, tqdm[Never]] = {}

    def advance(name: str, copied: int, total: int) -> None:
        if name not in bars:
            bar = tqdm(total=total, unit="pt", desc=f"migrating {name}", disable=not progress)
            bars[name] = bar
        bars[name].update(copied - bars[name].n)

    try:
        store, migrated = open_migrated_store(settings, advance)
    finally:
        for bar in bars.values():
            bar.close()
    report_migration(settings, migrated)
    return store


def report_migration(settings: Settings, migrated: list[MigratedCollection]) -> None:
    """One line per migrated collection, and where the old folder went."""
    if not migrated:
        return
    for collection in migrated:
        click.echo(f"migrated {collection.name}: {collection.points} points (counts match)")
    click.echo(
        f"the old store is kept in {settings.data_dir / MIGRATED_FOLDER}: delete it once "
        "you are satisfied"
    )
