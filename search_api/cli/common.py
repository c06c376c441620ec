"""Helpers every ``lookalike`` command module shares."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from ingest.errors import LookalikeError
from schemas.models import ModelManifest
from schemas.settings import Settings
from schemas.settings_errors import BAD_SETTINGS_STATUS, InvalidSettings, read_settings

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Turn Lookalike's own errors into a one-line message and exit code 1, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (LookalikeError, ValueError) as error:
            raise click.ClickException(str(error)) from error

    return wrapper  # type: ignore[return-value]


def environment_settings() -> Settings:
    """The settings of LOOKALIKE_* variables; bad ones print one line each and exit with 2."""
    try:
        return read_settings()
    except InvalidSettings as error:
        for line in error.lines:
            click.echo(line, err=True)
        raise click.exceptions.Exit(BAD_SETTINGS_STATUS) from None


def settings_of(ctx: click.Context) -> Settings:
    """The settings the root command read from the environment."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)  # noqa: S101 (set by the root command)
    return settings


def warn_if_random(manifest: ModelManifest) -> None:
    """A red warning on stderr when a model has random weights."""
    if manifest.random_weights:
        click.secho(
            f"WARNING: model {manifest.spec.id!r} has RANDOM WEIGHTS (for tests and benchmarks "
            "only): similarity results are not meaningful.",
            fg="red",
            bold=True,
            err=True,
        )


def folder_or_catalog(catalog_help: str) -> Callable[[F], F]:
    """The image-set arguments commands share: FOLDER, or --catalog CSV with --images DIR."""
    shared = (
        click.argument(
            "folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
        ),
        click.option(
            "--catalog",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=catalog_help,
        ),
        click.option(
            "--images",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Folder the catalog's image column is relative to (default: the CSV's folder).",
        ),
        click.option("--id-column", default="item_id", show_default=True),
        click.option("--image-column", default="image", show_default=True),
    )

    def decorate(command: F) -> F:
        for add in reversed(shared):  # as if stacked above the command in this order
            command = add(command)
        return command

    return decorate
