"""Following queued events to done on the terminal: a progress bar, then the failures."""

from __future__ import annotations

import time
from collections.abc import Sequence

import click
from tqdm import tqdm

from ingest.state.events import EventTracker
from schemas.events import EventState, EventStatus

POLL_SECONDS = 0.5


def follow(tracker: EventTracker, event_ids: Sequence[str], *, progress: bool) -> None:
    """Progress bar fed by the workers' status updates; prints failures at the end."""
    started = time.perf_counter()
    settled: list[EventState] = []
    with tqdm(total=len(event_ids), unit="img", disable=not progress, desc="workers") as bar:
        while True:
            states = tracker.statuses(event_ids)
            settled = [s for s in states if s and s.status is not EventStatus.QUEUED]
            bar.update(len(settled) - bar.n)
            if len(settled) == len(event_ids):
                break
            time.sleep(POLL_SECONDS)
    failed = [s for s in settled if s.status is EventStatus.FAILED]
    seconds = time.perf_counter() - started
    click.echo(
        f"done {len(settled) - len(failed)}, failed {len(failed)} in {seconds:.1f}s "
        f"({(len(settled) - len(failed)) / max(seconds, 1e-9):.1f} images/s)"
    )
    for state in failed:
        click.echo(f"  failed {state.item_id} [{state.reason}] {state.message}")
    if failed:
        click.echo("see `lookalike deadletters list`; `lookalike deadletters retry --all`")


def print_statuses(tracker: EventTracker, event_ids: Sequence[str]) -> None:
    """One line per event: id, status, item, reason."""
    for event_id, state in zip(event_ids, tracker.statuses(event_ids), strict=True):
        if state is None:
            click.echo(f"{event_id}  unknown (never queued, or older than 7 days)")
        else:
            reason = f" [{state.reason}] {state.message or ''}" if state.reason else ""
            click.echo(f"{event_id}  {state.status.value:<7} {state.item_id}{reason}")
