"""`lookalike blobs put`: put files in the blob store and print the URIs events name them by."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ingest.images.blobs import BlobStore
from search_api.cli.common import friendly_errors, settings_of


@click.group()
def blobs() -> None:
    """The content-addressed blob store that upload events point at (``blob://<sha256>``)."""


@blobs.command("put")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.pass_context
@friendly_errors
def blobs_put(ctx: click.Context, files: Sequence[Path]) -> None:
    """Copy FILES into the blob store; prints each one's blob:// URI, then its path.

    The store keeps a file under <blob dir>/<sha[0:2]>/<sha[2:4]>/<sha256>: a producer of its
    own on the same disk may write there too (atomically), or use this command.
    """
    store = BlobStore(settings_of(ctx).resolved_blob_dir())
    for path in files:
        click.echo(f"{store.put(path.read_bytes())}  {path}")
