"""The ``lookalike`` command line: one module per command group, wired here.

``search_api.cli.stack`` is the only module that brings the web app, the workers and the
embedded services together; the command modules go through it.
"""

from __future__ import annotations

import click

from search_api.cli.api import api
from search_api.cli.blobs import blobs
from search_api.cli.common import environment_settings
from search_api.cli.evaluate import evaluate
from search_api.cli.export import export
from search_api.cli.ingestion import ingest, sample_catalog
from search_api.cli.models import models
from search_api.cli.queue import deadletters, status, worker
from search_api.cli.reindex import reindex
from search_api.cli.search import collections, search
from search_api.cli.store import store
from search_api.cli.up import up


@click.group()
@click.version_option(package_name="lookalike")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Lookalike: visual similarity search for image catalogs.

    Settings come from LOOKALIKE_* environment variables (see the README).
    """
    ctx.obj = environment_settings()


# In the order `lookalike --help` used to list them (click sorts them by name anyway).
for command in (
    models,
    ingest,
    worker,
    status,
    deadletters,
    sample_catalog,
    search,
    collections,
    api,
    up,
    reindex,
    evaluate,
    blobs,
    store,
    export,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="lookalike")
