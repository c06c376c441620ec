"""`lookalike worker`, `lookalike status` and `lookalike deadletters`: the ingestion queue."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from schemas.settings import Settings
from search_api.cli.common import friendly_errors, settings_of
from search_api.cli.progress import print_statuses
from search_api.cli.stack import queue_connection, run_worker, running_broker_url


@click.command()
@click.option("--concurrency", type=click.IntRange(min=1), help="Worker processes.")
@click.option("--loglevel", default="info", show_default=True)
@click.pass_context
@friendly_errors
def worker(ctx: click.Context, concurrency: int | None, loglevel: str) -> None:
    """Run a Celery worker that embeds queued uploads (Ctrl-C stops it cleanly)."""
    run_worker(settings_of(ctx), concurrency, loglevel)


@click.command()
@click.argument("event_ids", nargs=-1)
@click.option(
    "--broker-url",
    is_flag=True,
    help="Print the queue's Redis URL, password included (the embedded one's if running), "
    "for producers and workers of your own.",
)
@click.pass_context
@friendly_errors
def status(ctx: click.Context, event_ids: Sequence[str], broker_url: bool) -> None:
    """Status of queued events: queued, received, done, or failed with its reason."""
    settings = settings_of(ctx)
    if broker_url:
        click.echo(_broker_url(settings))
        return
    if not event_ids:
        raise click.UsageError("give one or more event ids, or --broker-url")
    with queue_connection(settings) as publisher:
        print_statuses(publisher.tracker, event_ids)


def _broker_url(settings: Settings) -> str:
    url = running_broker_url(settings)
    if url is None:
        raise click.ClickException(
            f"no embedded Redis runs for {settings.data_dir}: start `lookalike up` (or set "
            "LOOKALIKE_REDIS_URL to a server of your own)"
        )
    return url


@click.group()
def deadletters() -> None:
    """Events that could not be ingested as they are: list, re-queue or purge them."""


@deadletters.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@friendly_errors
def deadletters_list(ctx: click.Context, as_json: bool) -> None:
    """Every dead letter with its reason, oldest first."""
    settings = settings_of(ctx)
    with queue_connection(settings) as publisher:
        letters = publisher.tracker.dead_letters()
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
    if not event_ids and not retry_all:
        raise click.UsageError("give EVENT_IDS or --all")
    settings = settings_of(ctx)
    with queue_connection(settings) as publisher:
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
    settings = settings_of(ctx)
    with queue_connection(settings) as publisher:
        dropped = publisher.tracker.purge_dead_letters()
    click.echo(f"purged {dropped} dead letter(s)")
