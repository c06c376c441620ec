"""Duplicate jobs, their stored groups and reviewers' "not a duplicate" pairs, in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from ingest.duplicates.groups import Pair, visible_group
from ingest.errors import LookalikeError
from ingest.state.keys import Keys
from ingest.state.records import change_record, text
from schemas.duplicates import (
    DuplicateGroup,
    DuplicateJob,
    DuplicateJobStatus,
    DuplicatePage,
)


class DuplicateJobNotFound(LookalikeError):
    """No duplicate job with this id (never created, or dropped as too old)."""


def _now() -> datetime:
    return datetime.now(UTC)


_TERMINAL = (DuplicateJobStatus.DONE, DuplicateJobStatus.FAILED)


class DuplicateResults:
    """Duplicate jobs, their stored groups and reviewers' "not a duplicate" pairs, in Redis."""

    # Groups are stored as found; dismissals apply when a page is read, so a reviewer's
    # click shows at once without a new scan. Keys: ``ingest.state.keys``.

    def __init__(
        self, client: redis.Redis, *, prefix: str = "lookalike", keep_jobs: int = 5
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.keep_jobs = keep_jobs
        self._job_key = self.keys.duplicate_job
        self._groups_key = self.keys.duplicate_groups
        self._jobs_key = self.keys.duplicate_jobs
        self._hidden_key = self.keys.duplicate_dismissals

    def create_job(
        self,
        model_id: str,
        *,
        threshold: float,
        transitive: bool = False,
        job_id: str | None = None,
    ) -> DuplicateJob:
        """Record a queued job (and forget the model's oldest finished jobs beyond the limit)."""
        job = DuplicateJob(
            job_id=job_id or uuid.uuid4().hex,
            model_id=model_id,
            threshold=threshold,
            transitive=transitive,
            created_at=_now(),
        )
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._job_key(job.job_id), job.model_dump_json())
            pipe.zadd(self._jobs_key(model_id), {job.job_id: job.created_at.timestamp()})
            pipe.execute()
        self._forget_old_jobs(model_id)
        return job

    def _forget_old_jobs(self, model_id: str) -> None:
        jobs = self.jobs(model_id)
        # Running jobs still write their results: only finished ones are dropped.
        for old in [j for j in jobs[self.keep_jobs :] if j.status in _TERMINAL]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._job_key(old.job_id), self._groups_key(old.job_id))
                pipe.zrem(self._jobs_key(model_id), old.job_id)
                pipe.execute()

    def job(self, job_id: str) -> DuplicateJob | None:
        """A job's metadata, status and progress; None if unknown."""
        raw = self.client.get(self._job_key(job_id))
        return DuplicateJob.model_validate_json(raw) if raw else None

    def _require(self, job_id: str) -> DuplicateJob:
        job = self.job(job_id)
        if job is None:
            raise DuplicateJobNotFound(f"no duplicate job {job_id!r}")
        return job

    def _update(self, job_id: str, **changes: Any) -> DuplicateJob:
        # Its task and the API that queued it may both write a job: compare-and-set.
        job = change_record(
            self.client,
            self._job_key(job_id),
            DuplicateJob,
            lambda job: job.model_copy(update=changes),
            missing=lambda: DuplicateJobNotFound(f"no duplicate job {job_id!r}"),
        )
        assert job is not None  # noqa: S101 (the edit never declines)
        return job

    def jobs(self, model_id: str) -> list[DuplicateJob]:
        """The model's jobs, newest first."""
        members = self.client.zrevrange(self._jobs_key(model_id), 0, -1)
        # Without scores the stubs' (member, score) tuples never occur.
        ids = [text(m) for m in members if isinstance(m, bytes | str)]
        if not ids:
            return []
        raws = self.client.mget([self._job_key(i) for i in ids])
        return [DuplicateJob.model_validate_json(raw) for raw in raws if raw]

    def latest_job(
        self, model_id: str, *, status: DuplicateJobStatus | None = None
    ) -> DuplicateJob | None:
        """The model's newest job (with this status, if given)."""
        for job in self.jobs(model_id):
            if status is None or job.status is status:
                return job
        return None

    def start(self, job_id: str) -> DuplicateJob:
        """Mark a job running (again, after a redelivery), clearing any earlier outcome."""
        return self._update(
            job_id,
            status=DuplicateJobStatus.RUNNING,
            started_at=_now(),
            finished_at=None,
            error=None,
            points_scanned=0,
        )

    def progress(self, job_id: str, scanned: int, total: int) -> None:
        """Record how many points a running job has scanned."""
        self._update(job_id, points_scanned=scanned, points_total=total)

    def finish(self, job_id: str, groups: Sequence[DuplicateGroup]) -> DuplicateJob:
        """Store a job's groups in the given order and mark it done, atomically."""
        job = self._require(job_id).model_copy(
            update={
                "status": DuplicateJobStatus.DONE,
                "groups": len(groups),
                "finished_at": _now(),
                "error": None,
            }
        )
        key = self._groups_key(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            for start in range(0, len(groups), 500):
                pipe.rpush(key, *(g.model_dump_json() for g in groups[start : start + 500]))
            pipe.set(self._job_key(job_id), job.model_dump_json())
            pipe.execute()
        return job

    def fail(self, job_id: str, error: str) -> DuplicateJob:
        """Mark a job failed with the reason."""
        return self._update(
            job_id, status=DuplicateJobStatus.FAILED, finished_at=_now(), error=error
        )

    def page(self, job_id: str, *, offset: int = 0, limit: int = 50) -> DuplicatePage:
        """Groups from ``offset`` on, skipping those emptied by dismissed pairs."""
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        job = self._require(job_id)
        key = self._groups_key(job_id)
        total = int(self.client.llen(key)) if job.status is DuplicateJobStatus.DONE else 0
        hidden = self.hidden_pairs(job.model_id)
        groups: list[DuplicateGroup] = []
        position = offset
        while len(groups) < limit and position < total:
            raws = self.client.lrange(key, position, position + limit - 1)
            if not raws:
                break
            for raw in raws:
                position += 1
                group = visible_group(
                    DuplicateGroup.model_validate_json(raw), hidden, transitive=job.transitive
                )
                if group is not None:
                    groups.append(group)
                    if len(groups) == limit:
                        break
        return DuplicatePage(
            job=job,
            groups=groups,
            offset=offset,
            next_offset=position if position < total else None,
            total=total,
        )

    @staticmethod
    def _member(a: str, b: str) -> str:
        return "|".join(sorted((a, b)))

    def mark_not_duplicate(self, model_id: str, point_a: str, point_b: str) -> bool:
        """Hide a pair from every result; False if it was already hidden."""
        if point_a == point_b:
            raise ValueError("a point is always a duplicate of itself")
        return bool(self.client.sadd(self._hidden_key(model_id), self._member(point_a, point_b)))

    def unmark_not_duplicate(self, model_id: str, point_a: str, point_b: str) -> bool:
        """Show a dismissed pair again; False if it was not hidden."""
        return bool(self.client.srem(self._hidden_key(model_id), self._member(point_a, point_b)))

    def hidden_pairs(self, model_id: str) -> set[Pair]:
        """Every pair reviewers marked "not a duplicate" in this model's collection."""
        return {
            frozenset(text(member).split("|"))
            for member in self.client.smembers(self._hidden_key(model_id))
        }
