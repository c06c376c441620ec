"""`lookalike ingest` (a folder or a catalog; here or through the queue) and `sample-catalog`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ingest.errors import StoreUnavailable
from ingest.images.blobs import BlobStore
from ingest.images.thumbnails import ThumbnailStore
from ingest.ingestion.bulk import (
    BulkIngestor,
    SourceImage,
    catalog_sources,
    folder_sources,
    upload_events,
)
from ingest.ingestion.enabled_models import check_models_enabled
from ingest.ingestion.samples import build_sample_catalog
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import load_runtime
from ingest.store.current import enabled_model_ids, open_store, store_exists
from schemas.events import UploadEvent
from schemas.settings import Settings
from search_api.cli.common import folder_or_catalog, friendly_errors, settings_of, warn_if_random
from search_api.cli.progress import follow
from search_api.cli.stack import queue_connection


@click.command()
@folder_or_catalog("CSV with one row per item: metadata columns become payload.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images (trial run).")
@click.option("--model", "model_ids", multiple=True, help="Model(s) to embed with.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per inference batch.")
@click.option("--progress/--no-progress", default=True)
@click.option(
    "--queue", "use_queue", is_flag=True, help="Publish upload events for the workers instead."
)
@click.option("--wait/--no-wait", default=True, help="With --queue: follow the workers until done.")
@click.pass_context
@friendly_errors
def ingest(
    ctx: click.Context,
    folder: Path | None,
    catalog: Path | None,
    images: Path | None,
    id_column: str,
    image_column: str,
    limit: int | None,
    model_ids: Sequence[str],
    batch_size: int | None,
    progress: bool,
    use_queue: bool,
    wait: bool,
) -> None:
    """Embed and store a folder of images, or a catalog CSV with --images DIR.

    With --queue the images are copied to the blob store and published as upload events;
    `lookalike worker` embeds them.
    """

    settings = settings_of(ctx)
    if (folder is None) == (catalog is None):
        raise click.UsageError("give either a FOLDER or --catalog CSV (with --images DIR)")
    if use_queue and model_ids:
        # Refused here, in one line, as the API refuses it: a worker would embed into a
        # collection that no upload without --model feeds, or dead-letter every event.
        enabled, caveat = queue_enabled_models(settings)
        check_models_enabled(model_ids, enabled, ModelRegistry(settings.models_dir), caveat=caveat)
    if catalog is not None:
        sources = catalog_sources(
            catalog, images or catalog.parent, id_column=id_column, image_column=image_column
        )
    else:
        assert folder is not None  # noqa: S101 (checked above)
        sources = folder_sources(folder)
    _print_notes(sources[:limit])
    if use_queue:
        _ingest_through_queue(settings, sources[:limit], list(model_ids) or None, progress, wait)
        return
    store = open_store(settings)
    try:
        # After a reindex the alias names the model uploads go to, as on the workers.
        runtimes = [
            load_runtime(settings, m) for m in model_ids or enabled_model_ids(settings, store)
        ]
        for runtime in runtimes:
            warn_if_random(runtime.manifest)
        summary = BulkIngestor(
            store,
            runtimes,
            settings.images,
            batch_size=batch_size or settings.batch_size,
            thumbnails=ThumbnailStore(settings.resolved_thumbnail_dir()),
            thumbnail_size=settings.thumbnail_size,
        ).run(sources, limit=limit, progress=progress)
    finally:
        store.close()
    click.echo(
        f"ingested {summary.ingested}, skipped {summary.skipped} (already stored), "
        f"failed {summary.failed} in {summary.seconds:.1f}s "
        f"({summary.images_per_second:.1f} images/s)"
    )
    for failure in summary.failures:
        click.echo(
            f"  failed {failure.item_id or '-'} [{failure.reason}] {failure.source}: "
            f"{failure.message}"
        )


UNREAD_STORE_CAVEAT = (
    "; the store cannot be read now (held by `lookalike up`?), so a reindex's current model "
    "is not known here: name it in LOOKALIKE_ENABLED_MODELS"
)


def queue_enabled_models(settings: Settings) -> tuple[list[str], str]:
    """The models uploads are embedded with (``enabled_model_ids``, as the API and the workers
    decide it), without keeping the store open; and a caveat when the store could not tell.

    LOOKALIKE_ENABLED_MODELS needs no store. Without it the current model does: the alias's
    after a reindex, read from the store if no other process owns it. A store owned by a
    running ``lookalike up`` (or a server that is down) cannot be read from here: then the
    settings answer (the default model), and a refusal says why it may be wrong.
    """
    if settings.enabled_models or not store_exists(settings):
        return settings.resolved_enabled_models(), ""
    try:
        store = open_store(settings)
    except StoreUnavailable:
        return settings.resolved_enabled_models(), UNREAD_STORE_CAVEAT
    try:
        return enabled_model_ids(settings, store), ""
    finally:
        store.close()


# A folder exported as both .jpg and .png has a note per file: the first ones say what happens.
MAX_NOTES = 50


def _print_notes(sources: Sequence[SourceImage]) -> None:
    notes = [source.note for source in sources if source.note is not None]
    for note in notes[:MAX_NOTES]:
        click.echo(f"  note: {note}")
    if len(notes) > MAX_NOTES:
        click.echo(f"  note: ... and {len(notes) - MAX_NOTES} more files keep their suffix")


def _ingest_through_queue(
    settings: Settings,
    sources: Sequence[Any],
    models: list[str] | None,
    progress: bool,
    wait: bool,
) -> None:

    blobs = BlobStore(settings.resolved_blob_dir())
    events, failures = upload_events(sources, blobs, settings.images, models=models)
    for failure in failures:
        click.echo(f"  not queued {failure.item_id or '-'} [{failure.reason}] {failure.message}")
    queue_ingest(settings, events, progress=progress, wait=wait)


@click.command("sample-catalog")
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def sample_catalog(target: Path) -> None:
    """Write a sample catalog (photos, near-duplicates, items.csv) to TARGET (`demo` extra)."""

    csv_path = build_sample_catalog(target)
    click.echo(f"sample catalog written: {csv_path} (images in {target / 'images'})")


def queue_ingest(
    settings: Settings,
    jobs: Sequence[UploadEvent],
    *,
    progress: bool,
    wait: bool,
) -> None:
    """Publish upload events and, with ``wait``, follow the workers' progress until done."""
    with queue_connection(settings) as publisher:
        event_ids = publisher.publish(jobs)
        click.echo(f"queued {len(event_ids)} upload events")
        if wait and event_ids:
            follow(publisher.tracker, event_ids, progress=progress)
