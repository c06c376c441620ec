"""The ``lookalike`` command line: models, bulk ingestion and search."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from schemas.models import ModelFamily, ModelManifest, Preprocessing, ResizeMode
from schemas.points import (
    AnyOfCondition,
    Condition,
    MatchCondition,
    PayloadFilter,
    RangeCondition,
    ScoredPoint,
)
from schemas.settings import Settings
from search_api.cli.common import friendly_errors, settings_of

_FILTER = re.compile(r"^(?P<key>[A-Za-z_][\w.-]*)\s*(?P<op><=|>=|<|>|=)\s*(?P<value>.*)$")


def _warn_if_random(manifest: ModelManifest) -> None:
    if manifest.random_weights:
        click.secho(
            f"WARNING: model {manifest.spec.id!r} has RANDOM WEIGHTS (for tests and benchmarks "
            "only): similarity results are not meaningful.",
            fg="red",
            bold=True,
            err=True,
        )


@click.group()
@click.version_option(package_name="lookalike")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Lookalike: visual similarity search for image catalogs.

    Settings come from LOOKALIKE_* environment variables (see the README).
    """
    ctx.obj = Settings()


# --- models -------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """List, download, export and register embedding models."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Known and installed models, with dimension and fingerprint."""
    from ingest.models.registry import KNOWN_MODELS, ModelRegistry

    settings = settings_of(ctx)
    installed = {
        manifest.spec.id: manifest for manifest in ModelRegistry(settings.models_dir).installed()
    }
    current = _current_model_or_none(settings)
    click.echo(f"models directory: {settings.models_dir}")
    click.echo(f"{'id':<28}{'dim':>6}  {'family':<12}status")
    for model_id in sorted(set(KNOWN_MODELS) | set(installed)):
        manifest = installed.get(model_id)
        spec = manifest.spec if manifest else KNOWN_MODELS[model_id]
        status = "not installed"
        if manifest:
            status = f"installed sha256:{manifest.sha256[:12]}"
            if manifest.random_weights:
                status += "  RANDOM WEIGHTS (tests/benchmarks only)"
        default = " (default)" if model_id == settings.default_model else ""
        if model_id == current:
            status += "  CURRENT (searches use it)"
        click.echo(f"{model_id + default:<28}{spec.dimension:>6}  {spec.family.value:<12}{status}")


def _current_model_or_none(settings: Settings) -> str | None:
    """The model the collection alias names (after a reindex), if the store can be read now."""
    from ingest.errors import LookalikeError
    from ingest.store.current import current_model_id, open_store
    from ingest.store.qdrant import MEMORY

    location = settings.resolved_qdrant_location()
    if settings.qdrant_url is None and (location == MEMORY or not Path(location).exists()):
        return None  # no store yet, so no alias: nothing to create just to list models
    try:
        store = open_store(settings)
    except LookalikeError:
        return None  # e.g. the local store is held by `lookalike up`: list without it
    try:
        return current_model_id(settings, store)
    except LookalikeError:
        return None
    finally:
        store.close()


@models.command("fetch")
@click.argument("model_id")
@click.option("--url", help="Download from this URL instead of the registry's.")
@click.option("--sha256", "sha256", help="Expected sha256 of the file.")
@click.option("--allow-unverified", is_flag=True, help="Trust the file on first use.")
@click.pass_context
@friendly_errors
def models_fetch(
    ctx: click.Context, model_id: str, url: str | None, sha256: str | None, allow_unverified: bool
) -> None:
    """Download a published ONNX file and verify its checksum (needs network)."""
    from ingest.errors import ModelError
    from ingest.models.fetch import download_file
    from ingest.models.registry import ModelRegistry

    registry = ModelRegistry(settings_of(ctx).models_dir)
    spec = registry.spec(model_id)
    source = url or spec.onnx_url
    if source is None:
        raise ModelError(
            f"no published ONNX file is known for {model_id!r}: use "
            f"`lookalike models export {model_id}` or pass --url"
        )
    target = registry.model_path(model_id)
    download_file(
        source,
        target,
        expected_sha256=sha256 or spec.onnx_sha256,
        allow_unverified=allow_unverified,
    )
    manifest = registry.install(spec, target, source=source)
    click.echo(f"installed {model_id} ({manifest.fingerprint})")


@models.command("export")
@click.argument("model_id")
@click.option(
    "--random-init",
    is_flag=True,
    help="Random weights instead of the hub's: for tests and benchmarks only.",
)
@click.option("--tiny", is_flag=True, help="Small random model of the same architecture.")
@click.option("--as", "install_as", help="Install under this id (default: derived).")
@click.pass_context
@friendly_errors
def models_export(
    ctx: click.Context, model_id: str, random_init: bool, tiny: bool, install_as: str | None
) -> None:
    """Build a model with PyTorch/transformers and export it to ONNX (`export` extra)."""
    from ingest.errors import ModelError
    from ingest.models.export import export_onnx
    from ingest.models.registry import ModelRegistry

    if tiny and not random_init:
        raise ModelError("--tiny makes a new architecture size: it needs --random-init")
    registry = ModelRegistry(settings_of(ctx).models_dir)
    spec = registry.spec(model_id)
    target_id = install_as or (f"{model_id}-tiny-random" if tiny else model_id)
    spec = spec.model_copy(update={"id": target_id})
    result = export_onnx(spec, registry.model_path(target_id), random_init=random_init, tiny=tiny)
    manifest = registry.install(
        result.spec,
        result.onnx_path,
        source=f"export:{model_id}{' random-init' if random_init else ''}",
        random_weights=random_init,
    )
    click.echo(
        f"exported {target_id} ({manifest.spec.dimension}-d, {manifest.fingerprint}); "
        f"ONNX Runtime vs PyTorch max abs diff {result.max_abs_diff:.2e}"
    )
    _warn_if_random(manifest)


@models.command("register")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "model_id", required=True, help="Id to register the model under.")
@click.option(
    "--family", type=click.Choice([f.value for f in ModelFamily]), default=ModelFamily.CUSTOM.value
)
@click.option("--input-size", type=int, help="Square input size (default: read from the graph).")
@click.option(
    "--resize", type=click.Choice([m.value for m in ResizeMode]), default=ResizeMode.SQUASH.value
)
@click.option("--random-weights", is_flag=True, help="Mark the model as random weights.")
@click.pass_context
@friendly_errors
def models_register(
    ctx: click.Context,
    onnx_file: Path,
    model_id: str,
    family: str,
    input_size: int | None,
    resize: str,
    random_weights: bool,
) -> None:
    """Add any ONNX embedding model (e.g. a fine-tuned DINOv2); its dimension is read."""
    from ingest.models.onnx_session import inspect_onnx
    from ingest.models.registry import ModelRegistry

    size = input_size or inspect_onnx(onnx_file).input_size or 224
    manifest = ModelRegistry(settings_of(ctx).models_dir).register(
        onnx_file,
        model_id,
        family=ModelFamily(family),
        preprocessing=Preprocessing(input_size=size, resize=ResizeMode(resize)),
        random_weights=random_weights,
    )
    click.echo(f"registered {model_id}: {manifest.spec.dimension}-d, {manifest.fingerprint}")


# --- ingestion ----------------------------------------------------------------------------


@cli.command()
@click.argument(
    "folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with one row per item: metadata columns become payload.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder the catalog's image column is relative to.",
)
@click.option("--id-column", default="item_id", show_default=True)
@click.option("--image-column", default="image", show_default=True)
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
    from ingest.images.thumbnails import ThumbnailStore
    from ingest.ingestion.bulk import BulkIngestor, catalog_sources, folder_sources
    from ingest.models.runtime import load_runtime
    from ingest.store.current import enabled_model_ids, open_store

    settings = settings_of(ctx)
    if (folder is None) == (catalog is None):
        raise click.UsageError("give either a FOLDER or --catalog CSV (with --images DIR)")
    if catalog is not None:
        sources = catalog_sources(
            catalog, images or catalog.parent, id_column=id_column, image_column=image_column
        )
    else:
        assert folder is not None  # noqa: S101 (checked above)
        sources = folder_sources(folder)
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
            _warn_if_random(runtime.manifest)
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


def _ingest_through_queue(
    settings: Settings,
    sources: Sequence[Any],
    models: list[str] | None,
    progress: bool,
    wait: bool,
) -> None:
    from ingest.images.blobs import BlobStore
    from ingest.ingestion.bulk import upload_events
    from search_api.cli.queue import queue_ingest

    blobs = BlobStore(settings.resolved_blob_dir())
    events, failures = upload_events(sources, blobs, settings.images, models=models)
    for failure in failures:
        click.echo(f"  not queued {failure.item_id or '-'} [{failure.reason}] {failure.message}")
    queue_ingest(settings, events, progress=progress, wait=wait)


@cli.command()
@click.option("--concurrency", type=click.IntRange(min=1), help="Worker processes.")
@click.option("--loglevel", default="info", show_default=True)
@click.pass_context
@friendly_errors
def worker(ctx: click.Context, concurrency: int | None, loglevel: str) -> None:
    """Run a Celery worker that embeds queued uploads (Ctrl-C stops it cleanly)."""
    from search_api.cli.queue import run_worker

    run_worker(settings_of(ctx), concurrency, loglevel)


@cli.command()
@click.argument("event_ids", nargs=-1, required=True)
@click.pass_context
@friendly_errors
def status(ctx: click.Context, event_ids: Sequence[str]) -> None:
    """Status of queued events: queued, done, or failed with its reason."""
    from search_api.cli.queue import celery_for, print_statuses
    from workers.publisher import Publisher

    settings = settings_of(ctx)
    with celery_for(settings) as celery:
        print_statuses(Publisher.connect(celery, settings.collection_prefix).tracker, event_ids)


@cli.group()
def deadletters() -> None:
    """Events that could not be ingested as they are: list, re-queue or purge them."""


@deadletters.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@friendly_errors
def deadletters_list(ctx: click.Context, as_json: bool) -> None:
    """Every dead letter with its reason, oldest first."""
    from search_api.cli.queue import celery_for
    from workers.publisher import Publisher

    settings = settings_of(ctx)
    with celery_for(settings) as celery:
        letters = Publisher.connect(celery, settings.collection_prefix).tracker.dead_letters()
    if as_json:
        click.echo(
            json.dumps(
                [{"event_id": i, **dl.model_dump(mode="json")} for i, dl in letters], indent=2
            )
        )
        return
    if not letters:
        click.echo("no dead letters")
    for event_id, letter in letters:
        click.echo(
            f"{event_id}  {letter.failed_at:%Y-%m-%d %H:%M:%S}  {letter.task}  "
            f"[{letter.reason}] {letter.message[:160]}"
        )


@deadletters.command("retry")
@click.argument("event_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Re-queue every dead letter.")
@click.pass_context
@friendly_errors
def deadletters_retry(ctx: click.Context, event_ids: Sequence[str], retry_all: bool) -> None:
    """Re-queue dead letters as they were (after fixing what made them fail)."""
    from search_api.cli.queue import celery_for
    from workers.publisher import Publisher

    if not event_ids and not retry_all:
        raise click.UsageError("give EVENT_IDS or --all")
    settings = settings_of(ctx)
    with celery_for(settings) as celery:
        publisher = Publisher.connect(celery, settings.collection_prefix)
        targets = list(event_ids) or [i for i, _ in publisher.tracker.dead_letters()]
        retried = [event_id for event_id in targets if publisher.retry_dead_letter(event_id)]
    missing = sorted(set(targets) - set(retried))
    click.echo(f"re-queued {len(retried)} event(s)")
    if missing:
        raise click.ClickException(f"no dead letter for: {', '.join(missing)}")


@deadletters.command("purge")
@click.confirmation_option(prompt="Drop every dead letter?")
@click.pass_context
@friendly_errors
def deadletters_purge(ctx: click.Context) -> None:
    """Drop every dead letter."""
    from search_api.cli.queue import celery_for
    from workers.publisher import Publisher

    settings = settings_of(ctx)
    with celery_for(settings) as celery:
        dropped = Publisher.connect(celery, settings.collection_prefix).tracker.purge_dead_letters()
    click.echo(f"purged {dropped} dead letter(s)")


@cli.command("sample-catalog")
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def sample_catalog(target: Path) -> None:
    """Write a sample catalog (photos, near-duplicates, items.csv) to TARGET (`demo` extra)."""
    from ingest.ingestion.samples import build_sample_catalog

    csv_path = build_sample_catalog(target)
    click.echo(f"sample catalog written: {csv_path} (images in {target / 'images'})")


# --- search -------------------------------------------------------------------------------


def parse_filters(expressions: Sequence[str]) -> PayloadFilter | None:
    """``key=value`` (repeat a key for any-of), ``key<=number``, ``key>number`` ..."""
    from ingest.ingestion.bulk import parse_cell

    matches: dict[str, list[Any]] = {}
    conditions: list[Condition] = []
    for expression in expressions:
        found = _FILTER.match(expression)
        if not found:
            raise click.BadParameter(
                f"{expression!r}: expected key=value, key<=number or key>=number",
                param_hint="--filter",
            )
        key, op, raw = found["key"], found["op"], found["value"].strip()
        value = parse_cell(raw)
        if op == "=":
            matches.setdefault(key, []).append(value)
            continue
        if isinstance(value, str):
            raise click.BadParameter(f"{expression!r}: {op} needs a number", param_hint="--filter")
        bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        conditions.append(RangeCondition(key=key, **{bound: float(value)}))
    for key, values in matches.items():
        if len(values) == 1 and isinstance(values[0], float):
            # Exact matches take keywords and integers only: a decimal is a one-point range.
            conditions.append(RangeCondition(key=key, gte=values[0], lte=values[0]))
        elif len(values) == 1:
            conditions.append(MatchCondition(key=key, value=values[0]))
        else:
            conditions.append(AnyOfCondition(key=key, values=values))
    return PayloadFilter(must=conditions) if conditions else None


def _print_hits(hits: Sequence[ScoredPoint], as_json: bool, shown_fields: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps([hit.model_dump() for hit in hits], indent=2, default=str))
        return
    if not hits:
        click.echo("no results")
    for rank, hit in enumerate(hits, start=1):
        extra = "  ".join(f"{key}={hit.payload[key]}" for key in shown_fields if key in hit.payload)
        click.echo(f"{rank:>3}. {hit.score:.4f}  {hit.item_id:<32} {extra}")


@cli.command()
@click.option("--image", "image_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--item", "item_id", help="Search with a stored item's image (no re-embedding).")
@click.option("--filter", "filters", multiple=True, help="key=value, key<=number, key>=number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--group-by", help="One result per value of this payload field (e.g. brand).")
@click.option("--model", "model_id", help="Model whose collection to search (default: current).")
@click.option("--threshold", type=float, help="Only results scoring at least this.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.pass_context
@friendly_errors
def search(
    ctx: click.Context,
    image_path: Path | None,
    item_id: str | None,
    filters: Sequence[str],
    limit: int,
    group_by: str | None,
    model_id: str | None,
    threshold: float | None,
    as_json: bool,
) -> None:
    """Rank stored images by similarity to an image file or a stored item."""
    from ingest.errors import ModelNotFound
    from ingest.models.registry import ModelRegistry
    from ingest.store.current import current_model_id, open_store
    from schemas.queries import SimilarityQuery
    from search_api.queries.similar import run_query

    if (image_path is None) == (item_id is None):
        raise click.UsageError("give either --image FILE or --item ID")
    settings = settings_of(ctx)
    filter_ = parse_filters(filters)
    store = open_store(settings)
    try:
        query = SimilarityQuery(
            model_id=model_id or current_model_id(settings, store),
            item_id=item_id,
            filter=filter_,
            limit=limit,
            group_by=group_by,
            score_threshold=threshold,
        )
        with contextlib.suppress(ModelNotFound):  # --item searches need no local model file
            _warn_if_random(ModelRegistry(settings.models_dir).manifest(query.model_id))
        hits = run_query(
            settings, store, query, image=image_path.read_bytes() if image_path else None
        )
    finally:
        store.close()
    _print_hits(hits, as_json, shown_fields=("brand", "category", "price", group_by or ""))


@cli.command()
@click.pass_context
@friendly_errors
def collections(ctx: click.Context) -> None:
    """Collections in the store: model, dimension, points, current or not, fingerprint."""
    from ingest.store.current import open_store

    store = open_store(settings_of(ctx))
    try:
        infos = store.collections()
    finally:
        store.close()
    if not infos:
        click.echo("no collections yet: run `lookalike ingest`")
    for info in infos:
        current = "current  " if info.current else ""
        click.echo(
            f"{info.name:<40}{info.dimension:>6}-d {info.points:>9} points  "
            f"{current}{info.model_fingerprint}"
        )


# --- HTTP API -----------------------------------------------------------------------------


@cli.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.pass_context
@friendly_errors
def api(ctx: click.Context, bind: str, workers: int, threads: int, dev: bool) -> None:
    """Serve the HTTP API (/api/v1, /healthz, /readyz, /metrics) with gunicorn."""
    from search_api.web.server import check_workers, serve

    settings = settings_of(ctx)
    try:
        check_workers(settings, workers)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    if not dev:
        serve(settings, bind=bind, workers=workers, threads=threads)
        return
    from search_api.web.app import create_app

    host, _, port = bind.rpartition(":")
    create_app(settings).run(host=host or "127.0.0.1", port=int(port), threaded=True)


def _register_commands() -> None:
    # Commands kept in their own modules (they share cli_common's helpers, not this module,
    # which may be running as __main__ under `python -m search_api.cli`).
    from search_api.cli.reindex import reindex
    from search_api.cli.up import up

    cli.add_command(up)
    cli.add_command(reindex)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="lookalike")


if __name__ == "__main__":
    main()
