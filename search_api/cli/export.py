"""`lookalike export`: a collection's embeddings, or a filtered part, into a file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from tqdm import tqdm

from ingest.store.current import current_model_id, open_store
from ingest.vector_export.plan import plan_export
from ingest.vector_export.run import (
    ExportSummary,
    check_format_available,
    output_files,
    write_export,
)
from schemas.exports import ExportFormat
from search_api.cli.common import friendly_errors, settings_of
from search_api.cli.search import parse_filters

_SUFFIXES = {f".{fmt.value}": fmt for fmt in ExportFormat}


def _format_of(fmt: str | None, out: Path) -> ExportFormat:
    """The chosen format, else the one OUT's suffix names."""
    if fmt is not None:
        return ExportFormat(fmt)
    if out.suffix in _SUFFIXES:
        return _SUFFIXES[out.suffix]
    names = ", ".join(choice.value for choice in ExportFormat)
    raise click.UsageError(f"give --format ({names}): the name {out.name!r} does not say which")


def _check_targets(files: Sequence[Path], force: bool) -> None:
    if not files[0].parent.is_dir():
        raise click.ClickException(f"no folder {files[0].parent}: create it first")
    for path in files:
        if path.is_dir():
            raise click.ClickException(f"{path} is a folder: name a file to write")
        if path.exists() and not force:
            raise click.ClickException(f"{path} exists: give --force to replace it")


def _report(summary: ExportSummary) -> None:
    names = " and ".join(str(path) for path in summary.files)
    click.echo(f"exported {summary.points} points, {summary.bytes:,} bytes, to {names}")
    if summary.changed:
        click.echo(
            f"note: the collection changed during the export: {summary.expected} points "
            f"matched when it began, {summary.points} were written (as they were read)"
        )


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice([fmt.value for fmt in ExportFormat]),
    help="jsonl: a JSON object per point (id, item_id, payload, vector); npy: a float32 "
    "matrix plus OUT's sidecar <name>.ids.jsonl (id, item_id, payload of each row); parquet: "
    "columns id, item_id, payload (JSON), vector. Default: OUT's suffix.",
)
@click.option("--model", "model_id", help="Model whose collection to export (default: current).")
@click.option(
    "--filter", "filters", multiple=True, help="key=value, key<=number, key>=number (repeatable)."
)
@click.option("--force", is_flag=True, help="Replace OUT (and its sidecar) if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.argument("out", type=click.Path(path_type=Path))
@click.pass_context
@friendly_errors
def export(
    ctx: click.Context,
    fmt: str | None,
    model_id: str | None,
    filters: Sequence[str],
    force: bool,
    no_progress: bool,
    out: Path,
) -> None:
    """Write the embeddings of a collection (or of the points matching --filter) to OUT.

    Points are read a page at a time, so memory stays small whatever the collection's size.
    """
    export_format = _format_of(fmt, out)
    filter_ = parse_filters(filters)
    check_format_available(export_format)
    _check_targets(output_files(export_format, out), force)
    settings = settings_of(ctx)
    store = open_store(settings)
    try:
        plan = plan_export(store, model_id or current_model_id(settings, store), filter_)
        with tqdm(total=plan.points, unit="pt", disable=no_progress, desc="export") as bar:
            summary = write_export(store, plan, export_format, out, progress=bar.update)
    except OSError as error:
        raise click.ClickException(f"cannot write {out}: {error.strerror or error}") from error
    finally:
        store.close()
    _report(summary)
