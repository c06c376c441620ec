"""Re-index jobs in Redis: each job's record, its failed point ids and the index of jobs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from ingest.errors import LookalikeError
from ingest.state.keys import Keys
from ingest.state.records import change_record
from schemas.reindex import MAX_LISTED_FAILURES, ReindexFailure, ReindexJob, ReindexState

PAGE_SIZE = 64


class ReindexJobNotFound(LookalikeError):
    """No re-index job with this id."""


def _now() -> datetime:
    return datetime.now(UTC)


class ReindexJobs:
    """Re-index jobs in Redis: each job's record and its failed point ids."""

    def __init__(self, client: redis.Redis, *, prefix: str = "lookalike") -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.index_key = self.keys.reindex_jobs
        self._key = self.keys.reindex_job
        self._failed_key = self.keys.reindex_failed

    def create(
        self,
        target: str,
        *,
        source: str | None = None,
        drop_old: bool = False,
        allow_failures: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> ReindexJob:
        """Record a queued job whose first page is about to be queued."""
        job = ReindexJob(
            job_id=uuid.uuid4().hex,
            source=source,
            target=target,
            drop_old=drop_old,
            allow_failures=allow_failures,
            page_size=page_size,
            pages_queued=1,
            created_at=_now(),
        )
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._key(job.job_id), job.model_dump_json())
            pipe.zadd(self.index_key, {job.job_id: job.created_at.timestamp()})
            pipe.execute()
        return job

    def job(self, job_id: str) -> ReindexJob | None:
        """A job's state and progress; None if unknown."""
        raw = self.client.get(self._key(job_id))
        return ReindexJob.model_validate_json(raw) if raw else None

    def require(self, job_id: str) -> ReindexJob:
        """A job, or ``ReindexJobNotFound``."""
        job = self.job(job_id)
        if job is None:
            raise ReindexJobNotFound(f"no re-index job {job_id!r}")
        return job

    def latest(self) -> ReindexJob | None:
        """The newest job, if any."""
        newest = self.client.zrevrange(self.index_key, 0, 0)
        for member in newest:
            if isinstance(member, bytes | str):
                return self.job(member.decode() if isinstance(member, bytes) else member)
        return None

    def change(
        self, job_id: str, edit: Callable[[ReindexJob], ReindexJob | None]
    ) -> ReindexJob | None:
        """Atomically replace the job by ``edit(job)``; None (and no write) if edit says so."""
        return change_record(
            self.client,
            self._key(job_id),
            ReindexJob,
            edit,
            missing=lambda: ReindexJobNotFound(f"no re-index job {job_id!r}"),
        )

    def update(self, job_id: str, **changes: Any) -> ReindexJob:
        """Set fields of a job."""
        job = self.change(job_id, lambda job: job.model_copy(update=changes))
        assert job is not None  # noqa: S101 (the edit never declines)
        return job

    def fail(self, job_id: str, message: str) -> ReindexJob:
        """Mark a job failed with the reason (the alias stays where it was, unless switched)."""
        return self.update(job_id, state=ReindexState.FAILED, message=message, finished_at=_now())

    def record_page(
        self,
        job_id: str,
        page: int,
        *,
        next_offset: str | None,
        done: int,
        skipped: int,
        failures: Sequence[ReindexFailure],
    ) -> ReindexJob | None:
        """Count page ``page`` once: None if it was recorded already (another delivery)."""

        def edit(job: ReindexJob) -> ReindexJob | None:
            if job.pages_done != page or job.finished:
                return None
            return _counted(job, done=done, skipped=skipped, failures=failures).model_copy(
                update={"pages_done": page + 1, "next_offset": next_offset}
            )

        recorded = self.change(job_id, edit)
        if recorded is not None:
            self._remember_failed(job_id, failures)
        return recorded

    def add_outcomes(
        self,
        job_id: str,
        *,
        done: int = 0,
        failures: Sequence[ReindexFailure] = (),
        removed: int = 0,
    ) -> ReindexJob:
        """Count what a reconciliation pass did."""
        job = self.change(
            job_id,
            lambda job: _counted(job, done=done, skipped=0, failures=failures).model_copy(
                update={"removed": job.removed + removed}
            ),
        )
        assert job is not None  # noqa: S101 (the edit never declines)
        self._remember_failed(job_id, failures)
        return job

    def _remember_failed(self, job_id: str, failures: Sequence[ReindexFailure]) -> None:
        if failures:
            self.client.sadd(self._failed_key(job_id), *(f.point_id for f in failures))

    def failed_among(self, job_id: str, point_ids: Sequence[str]) -> set[str]:
        """Which of these points already failed in this job (not tried again by it)."""
        if not point_ids:
            return set()
        flags = self.client.smismember(self._failed_key(job_id), list(point_ids))
        return {point for point, flag in zip(point_ids, flags, strict=True) if flag}


def _counted(
    job: ReindexJob, *, done: int, skipped: int, failures: Sequence[ReindexFailure]
) -> ReindexJob:
    room = max(0, MAX_LISTED_FAILURES - len(job.failures))
    counted = job.model_copy(
        update={
            "done": job.done + done,
            "skipped": job.skipped + skipped,
            "failed": job.failed + len(failures),
            "failures": [*job.failures, *failures[:room]],
        }
    )
    # Points uploaded during the re-index are handled on top of the count taken at the start.
    return counted.model_copy(update={"total": max(counted.total, counted.handled)})
