"""`lookalike api`: serve the HTTP API and the admin page."""

from __future__ import annotations

import click

from search_api.cli.common import friendly_errors, settings_of
from search_api.cli.stack import serve_api
from search_api.web.server import check_workers


@click.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.pass_context
@friendly_errors
def api(ctx: click.Context, bind: str, workers: int, threads: int, dev: bool) -> None:
    """Serve the HTTP API (/api/v1, /healthz, /readyz, /metrics) with gunicorn."""
    try:
        check_workers(settings_of(ctx), workers)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    serve_api(settings_of(ctx), bind=bind, workers=workers, threads=threads, dev=dev)
