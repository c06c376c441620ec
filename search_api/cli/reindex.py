"""``lookalike reindex``: re-embed every stored image with another model, on the workers.

This command only talks to Redis: the workers hold the vector store (with the embedded
store, another process such as ``lookalike up`` may hold it), so the job is queued and
followed through its record in Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import click
from tqdm import tqdm

from ingest.models.registry import ModelRegistry
from ingest.state.reindex_jobs import PAGE_SIZE, ReindexJobs
from schemas.reindex import ReindexJob, ReindexState
from schemas.settings import Settings
from search_api.cli.common import friendly_errors, settings_of
from search_api.cli.stack import queue_connection
from search_api.producer.jobs import enqueue_reindex, resume_reindex

POLL_SECONDS = 0.5
# A queued job nobody has started after this long most likely has no worker to run it.
NO_WORKER_HINT_SECONDS = 5.0


@click.command("reindex")
@click.option("--to", "target", metavar="MODEL", help="Installed model to re-index into.")
@click.option(
    "--drop-old", is_flag=True, help="Delete the old collection after the switch (no rollback)."
)
@click.option(
    "--allow-failures", is_flag=True, help="Switch even if some images cannot be re-embedded."
)
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends.")
@click.option("--progress/--no-progress", default=True)
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    default=PAGE_SIZE,
    show_default=True,
    help="Images per worker task (uploads are handled between tasks).",
)
@click.option(
    "--status", "status_of", metavar="JOB_ID", help="Show a job (`latest`: the newest one)."
)
@click.option(
    "--resume", "resume_id", metavar="JOB_ID", help="Queue a stalled or failed job again."
)
@click.pass_context
@friendly_errors
def reindex(
    ctx: click.Context,
    target: str | None,
    drop_old: bool,
    allow_failures: bool,
    wait: bool,
    progress: bool,
    page_size: int,
    status_of: str | None,
    resume_id: str | None,
) -> None:
    """Re-embed every stored image with another model, then switch searches to it.

    Workers (`lookalike worker` or `lookalike up`) read the current collection page by page
    and fill MODEL's collection while searches and uploads keep using the current one; the
    collection alias switches when every image is in. Images are read again from where they
    were ingested from (blob store, file roots, allowed hosts). The old collection is kept:
    roll back with `lookalike reindex --to OLD_MODEL`, which re-embeds only what changed.
    """
    if sum(x is not None for x in (target, status_of, resume_id)) != 1:
        raise click.UsageError("give one of --to MODEL, --status JOB_ID or --resume JOB_ID")
    settings = settings_of(ctx)
    if target is not None:
        _check_target(settings, target)
    options = _Options(drop_old, allow_failures, wait, progress, page_size)
    _run(settings, target, status_of, resume_id, options)


def _check_target(settings: Settings, target: str) -> None:
    """Refuse a model that is not installed here, before anything is queued."""

    manifest = ModelRegistry(settings.models_dir).manifest(target)
    if manifest.random_weights:
        click.secho(
            f"WARNING: model {target!r} has RANDOM WEIGHTS (for tests and benchmarks only): "
            "similarity results will not be meaningful after the switch.",
            fg="red",
            bold=True,
            err=True,
        )


@dataclass(frozen=True)
class _Options:
    drop_old: bool
    allow_failures: bool
    wait: bool
    progress: bool
    page_size: int


def _run(
    settings: Settings,
    target: str | None,
    status_of: str | None,
    resume_id: str | None,
    options: _Options,
) -> None:
    with queue_connection(settings) as publisher:
        celery = publisher.celery
        jobs = ReindexJobs(publisher.tracker.client, prefix=settings.collection_prefix)
        if status_of is not None:
            job = jobs.latest() if status_of == "latest" else jobs.job(status_of)
            if job is None:
                raise click.ClickException(f"no re-index job {status_of!r}")
            print_job(job)
            return
        if resume_id is not None:
            job = resume_reindex(celery, jobs, resume_id, allow_failures=options.allow_failures)
            click.echo(f"re-index job {job.job_id} queued again ({job.state.value})")
        else:
            assert target is not None  # noqa: S101 (checked by the command)
            job = enqueue_reindex(
                celery,
                jobs,
                target,
                drop_old=options.drop_old,
                allow_failures=options.allow_failures,
                page_size=options.page_size,
            )
            click.echo(f"queued re-index job {job.job_id} into {target}")
        if not options.wait:
            click.echo(f"follow it with `lookalike reindex --status {job.job_id}`")
            return
        final = follow(jobs, job.job_id, progress=options.progress)
    print_job(final)
    if final.state is ReindexState.FAILED:
        raise SystemExit(1)


def follow(jobs: ReindexJobs, job_id: str, *, progress: bool) -> ReindexJob:
    """Progress bar fed by the job record until the job is done or failed."""
    waited = time.monotonic()
    hinted = False
    try:
        with tqdm(total=0, unit="img", disable=not progress, desc="reindex") as bar:
            while True:
                job = jobs.require(job_id)
                if bar.total != job.total:
                    bar.total = job.total
                    bar.refresh()
                bar.update(job.handled - bar.n)
                bar.set_postfix_str(job.state.value)
                if job.finished:
                    return job
                stuck = time.monotonic() - waited > NO_WORKER_HINT_SECONDS
                if job.state is ReindexState.QUEUED and stuck and not hinted:
                    hinted = True
                    tqdm.write(
                        "no worker has picked the job up yet; is `lookalike worker` or "
                        "`lookalike up` running (with the same LOOKALIKE_* settings)?"
                    )
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped following: the job goes on in the background "
            f"(`lookalike reindex --status {job_id}`)"
        )
        raise SystemExit(130) from None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 1e-9)


def print_job(job: ReindexJob) -> None:
    """The job's outcome: counts, failures with reasons, whether the alias switched."""
    source = job.source or "(current model)"
    click.echo(f"re-index {job.job_id}: {source} -> {job.target}  [{job.state.value}]")
    timing = ""
    seconds = _seconds(job.started_at, job.finished_at)
    if seconds is not None:
        timing = f" in {seconds:.1f}s ({job.done / seconds:.1f} images/s)"
    click.echo(
        f"re-embedded {job.done}, skipped {job.skipped} (already there), failed {job.failed}, "
        f"removed {job.removed} (deleted meanwhile) of {job.total}{timing}"
    )
    for failure in job.failures:
        click.echo(
            f"  failed {failure.item_id} [{failure.reason}] {failure.source_uri}: {failure.message}"
        )
    if job.failed > len(job.failures):
        click.echo(f"  ... and {job.failed - len(job.failures)} more")
    if job.switched:
        click.echo(f"alias switched: searches now use {job.target}")
    elif job.finished:
        click.echo(f"alias not switched: searches still use {source}")
    if job.message:
        click.echo(job.message)
