"""Helpers every ``lookalike`` command module shares."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from ingest.errors import LookalikeError
from schemas.models import ModelManifest
from schemas.settings import Settings

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
