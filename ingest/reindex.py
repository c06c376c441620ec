"""Re-indexing: re-embed every stored image into another model's collection, then switch.

Collections are ``<prefix>__<model id>``; the alias ``<prefix>`` names the *current* one
(``ingest.runtime.current_model_id``: queries and uploads without an explicit model use it).
A re-index reads the current model's collection page by page, fetches each point's image
again from its ``source_uri`` (images are never kept in the store), embeds it with the target
model and upserts it under the same point id with the same payload. Searches keep using the
old collection until the very end, when the alias moves in one atomic store request.

Everything here is plain functions over the store, a model loader, the source resolver and a
job record in Redis; ``workers.reindex_tasks`` runs one page per Celery task, tests run the
same steps in-process. Every step is idempotent:

- a page's points already present in the target are skipped, so a redelivered page (a worker
  killed mid-page) or a whole new job to the same target resumes instead of starting over;
- a page's counts are recorded with a compare-and-set on ``pages_done``, so two deliveries of
  one page count it once, and only the delivery that recorded it queues the next page;
- an image that cannot be read or decoded is a failure with its reason, counted once and not
  retried by this job (a later job to the same target tries it again).

While the pages run, uploads land in the old collection and deletes and payload updates go to
every collection. Before the switch the job reconciles: target points whose source point is
gone are deleted, source points the scroll missed are embedded, drifted metadata is copied.
After the switch one more catch-up pass picks up uploads that reached the old collection just
before it. The old collection is kept (``drop_old`` deletes it): rolling back is a re-index to
the old model, which only re-embeds what changed since.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import redis

from ingest.errors import InvalidImage, LookalikeError, SourceUnavailable, StoreUnavailable
from ingest.images import sha256_hex
from ingest.pipeline import ImageJob, ModelRuntime, PreparedImage, embed_and_store, prepare_image
from ingest.registry import ModelRegistry
from ingest.runtime import current_model_id
from ingest.sources import SourceResolver
from ingest.store.base import SYSTEM_PAYLOAD_KEYS, VectorStore
from schemas.models import ModelManifest
from schemas.points import StoredPoint
from schemas.reindex import MAX_LISTED_FAILURES, ReindexFailure, ReindexJob, ReindexState
from schemas.settings import Settings

PAGE_SIZE = 64
# How many times a job record update is retried when another writer got there first.
_CAS_ATTEMPTS = 50

RuntimeLoader = Callable[[str], ModelRuntime]


class ReindexJobNotFound(LookalikeError):
    """No re-index job with this id."""


class ReindexRefused(LookalikeError):
    """The re-index cannot start as asked (same model as the current one, ...)."""


def same_model_message(model_id: str) -> str:
    """Why re-indexing a model into itself is refused, and what to do instead."""
    return (
        f"{model_id!r} is already the current model: nothing to re-index. To re-index with a "
        "new file of the same model, register it under a new id (`lookalike models register "
        "FILE --id NEW_ID`) and run `lookalike reindex --to NEW_ID`"
    )


def check_reindex(
    settings: Settings, store: VectorStore, registry: ModelRegistry, target: str
) -> tuple[str, ModelManifest]:
    """The source model and the target's manifest, with the target collection ready.

    ``ModelNotFound`` if the target is not installed, ``ReindexRefused`` if it is the current
    model, ``StoreError`` if the current model has no collection, ``CollectionMismatch`` if
    the target's collection was built with another file.
    """
    manifest = registry.manifest(target)
    source = current_model_id(settings, store)
    if source == target:
        raise ReindexRefused(same_model_message(target))
    store.count(source)  # "no collection for model ..." when there is nothing to re-index
    store.ensure_collection(manifest)
    return source, manifest


def _now() -> datetime:
    return datetime.now(UTC)


def _user_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in SYSTEM_PAYLOAD_KEYS}


class ReindexJobs:
    """Re-index jobs in Redis: ``<prefix>:reindex:<job_id>`` (JSON) and its failed point ids."""

    def __init__(self, client: redis.Redis, *, prefix: str = "lookalike") -> None:
        self.client = client
        self.prefix = f"{prefix}:reindex"
        self.index_key = f"{self.prefix}:jobs"

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:{job_id}"

    def _failed_key(self, job_id: str) -> str:
        return f"{self.prefix}:{job_id}:failed"

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
        key = self._key(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(_CAS_ATTEMPTS):
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if not raw:
                        raise ReindexJobNotFound(f"no re-index job {job_id!r}")
                    edited = edit(ReindexJob.model_validate_json(raw))
                    if edited is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.set(key, edited.model_dump_json())
                    pipe.execute()
                    return edited
                except redis.WatchError:
                    continue  # another writer got in between: read again
        raise redis.RedisError(f"re-index job {job_id!r} kept changing under {_CAS_ATTEMPTS} tries")

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


@dataclass(frozen=True)
class Step:
    """What to do after a page: queue the next page, finish (reconcile + switch), or stop."""

    kind: Literal["page", "finish", "stop"]
    page: int = 0
    offset: str | None = None


STOP = Step("stop")


class _Unusable(Exception):
    """A stored point whose image cannot be re-embedded (reason kept in the job)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Reindexer:
    """Runs a re-index job's steps against a store; any process holding the store may."""

    settings: Settings
    store: VectorStore
    jobs: ReindexJobs
    resolver: SourceResolver
    load_runtime: RuntimeLoader

    # -- the whole job in this process ------------------------------------------------------

    def run(self, job_id: str) -> ReindexJob:
        """The job's remaining pages, then reconcile and switch, here and now (in-process)."""
        job = self.jobs.require(job_id)
        step = (
            Step("finish")
            if job.pages_done and job.next_offset is None
            else Step("page", job.pages_done, job.next_offset)
        )
        while step.kind == "page":
            step = self.run_page(job_id, step.page, step.offset)
            if step.kind == "page":
                self.jobs.update(job_id, pages_queued=step.page + 1)
        if step.kind == "finish":
            return self.finish(job_id)
        return self.jobs.require(job_id)

    # -- one page ---------------------------------------------------------------------------

    def run_page(self, job_id: str, page: int, offset: str | None) -> Step:
        """Re-embed page ``page`` (starting at point ``offset``) if it is still to do.

        Returns what comes next. ``StoreUnavailable`` propagates (retry the page later);
        other refusals fail the job.
        """
        try:
            return self._run_page(job_id, page, offset)
        except StoreUnavailable:
            raise
        except LookalikeError as error:
            if isinstance(error, ReindexJobNotFound):
                raise
            self.jobs.fail(job_id, str(error))
            return STOP

    def _run_page(self, job_id: str, page: int, offset: str | None) -> Step:
        job = self.jobs.require(job_id)
        if job.finished:
            return STOP
        if job.state is ReindexState.QUEUED:
            job = self._start(job)
            if job.finished:
                return STOP
        if job.pages_done > page:
            # A redelivery of a page already counted: hand on what its first delivery may
            # have died before handing on, and nothing else.
            if job.pages_done == page + 1 and job.pages_queued <= job.pages_done:
                return self._next(job)
            return STOP
        if job.pages_done < page or job.state is not ReindexState.RUNNING:
            return STOP  # not this page's turn (a stray duplicate): the chain goes on without it
        assert job.source is not None  # noqa: S101 (set by _start)
        points, next_offset = self.store.scroll(job.source, limit=job.page_size, offset=offset)
        done, skipped, failures = self._reembed(job, points)
        recorded = self.jobs.record_page(
            job_id, page, next_offset=next_offset, done=done, skipped=skipped, failures=failures
        )
        if recorded is None:
            return STOP  # another delivery of this page counted it and hands on
        return self._next(recorded)

    def _start(self, job: ReindexJob) -> ReindexJob:
        """Resolve and check the source, create the target collection, count the work."""
        try:
            if job.source is None:
                source, _ = check_reindex(
                    self.settings, self.store, ModelRegistry(self.settings.models_dir), job.target
                )
            else:
                source = job.source
                if source == job.target:
                    raise ReindexRefused(same_model_message(job.target))
                self.store.ensure_collection(self.load_runtime(job.target).manifest)
            total = self.store.count(source)
        except ReindexRefused as error:
            return self.jobs.fail(job.job_id, str(error))
        return self.jobs.update(
            job.job_id,
            source=source,
            total=total,
            state=ReindexState.RUNNING,
            started_at=job.started_at or _now(),
            message=None,
        )

    @staticmethod
    def _next(job: ReindexJob) -> Step:
        if job.next_offset is None:
            return Step("finish")
        return Step("page", job.pages_done, job.next_offset)

    def _reembed(
        self, job: ReindexJob, points: Sequence[StoredPoint]
    ) -> tuple[int, int, list[ReindexFailure]]:
        """Embed the points missing from the target; (re-embedded, skipped, failures)."""
        if not points:
            return 0, 0, []
        present = {p.id for p in self.store.retrieve(job.target, [p.id for p in points])}
        todo = [point for point in points if point.id not in present]
        done, failures = self._embed(job, todo)
        return done, len(points) - len(todo), failures

    def _embed(
        self, job: ReindexJob, points: Sequence[StoredPoint]
    ) -> tuple[int, list[ReindexFailure]]:
        if not points:
            return 0, []
        runtime = self.load_runtime(job.target)
        prepared: list[PreparedImage] = []
        failures: list[ReindexFailure] = []
        for point in points:
            try:
                prepared.append(self._prepare(runtime, point))
            except _Unusable as error:
                failures.append(_failure(point, error.reason, error.message))
            except InvalidImage as error:
                failures.append(_failure(point, error.reason.value, error.message))
            except SourceUnavailable as error:
                # Counted, not retried by this job: a later re-index to the same target tries
                # the failed images again (everything else is skipped).
                failures.append(_failure(point, "source_unavailable", str(error)))
        if prepared:
            embed_and_store(self.store, runtime, prepared)
        return len(prepared), failures

    def _prepare(self, runtime: ModelRuntime, point: StoredPoint) -> PreparedImage:
        """The stored point's image, fetched again and preprocessed for the target model."""
        payload = point.payload
        uri = payload.get("source_uri")
        if not isinstance(uri, str) or not uri:
            raise _Unusable("no_source", "the stored point has no source_uri to read it again from")
        data = self.resolver.fetch(uri)
        stored_sha = payload.get("image_sha256")
        actual_sha = sha256_hex(data)
        if isinstance(stored_sha, str) and stored_sha and actual_sha != stored_sha:
            # Re-embedding other bytes under this point's id would make its vector lie.
            raise _Unusable(
                "source_changed",
                f"{uri} now holds other bytes (sha256 {actual_sha[:16]}..., stored image "
                f"{stored_sha[:16]}...); ingest the item again",
            )
        job = ImageJob(point.item_id, uri, _user_metadata(payload))
        image = prepare_image(job, data, runtime.preprocessing, self.settings.images)
        thumbnail = payload.get("thumbnail_key")
        return replace(image, thumbnail_key=thumbnail if isinstance(thumbnail, str) else None)

    # -- the end: reconcile, switch, catch up ------------------------------------------------

    def finish(self, job_id: str) -> ReindexJob:
        """Reconcile, move the alias (unless images failed), catch up; idempotent."""
        try:
            return self._finish(job_id)
        except StoreUnavailable:
            raise
        except LookalikeError as error:
            if isinstance(error, ReindexJobNotFound):
                raise
            return self.jobs.fail(job_id, str(error))

    def _finish(self, job_id: str) -> ReindexJob:
        job = self.jobs.require(job_id)
        if job.finished:
            return job
        job = self.jobs.update(job_id, state=ReindexState.SWITCHING)
        source = job.source
        assert source is not None  # noqa: S101 (a running job has its source)
        if not job.switched:
            self._remove_orphans(job)
            job = self._catch_up(job)
            if job.failed and not job.allow_failures:
                return self.jobs.fail(
                    job_id,
                    f"{job.failed} image(s) could not be re-embedded (see failures): the alias "
                    f"was not switched and searches still use {source!r}. Fix them and run the "
                    "re-index again (images already re-embedded are skipped), or allow failures "
                    f"(`--allow-failures`).{_hint(job)}",
                )
            current = current_model_id(self.settings, self.store)
            if current not in (source, job.target):  # target: switched, then redelivered
                return self.jobs.fail(
                    job_id,
                    f"the current model changed from {source!r} to {current!r} during the "
                    "re-index (another re-index?): the alias was not switched",
                )
            self.store.set_current(job.target)
            job = self.jobs.update(job_id, switched=True)
        # Uploads resolved to the old model just before the switch landed there.
        job = self._catch_up(job)
        if job.drop_old and not job.dropped_old:
            self.store.drop_collection(source)
            job = self.jobs.update(job_id, dropped_old=True)
        kept = "deleted" if job.dropped_old else f"kept (roll back: re-index to {source!r})"
        note = f"; {job.failed} image(s) failed and are missing" if job.failed else ""
        return self.jobs.update(
            job_id,
            state=ReindexState.DONE,
            finished_at=_now(),
            message=f"searches now use {job.target!r}; the {source!r} collection is {kept}{note}",
        )

    def _pages(self, model_id: str, page_size: int) -> Iterable[list[StoredPoint]]:
        offset: str | None = None
        while True:
            points, offset = self.store.scroll(model_id, limit=page_size, offset=offset)
            if points:
                yield points
            if offset is None:
                return

    def _remove_orphans(self, job: ReindexJob) -> None:
        """Delete target points whose source point is gone (deleted during the re-index)."""
        assert job.source is not None  # noqa: S101 (a running job has its source)
        removed = 0
        for points in self._pages(job.target, job.page_size):
            ids = [p.id for p in points]
            alive = {p.id for p in self.store.retrieve(job.source, ids)}
            gone = [i for i in ids if i not in alive]
            if gone:
                removed += self.store.delete_points(job.target, gone)
        if removed:
            self.jobs.add_outcomes(job.job_id, removed=removed)

    def _catch_up(self, job: ReindexJob) -> ReindexJob:
        """Embed source points the target lacks; copy metadata that changed meanwhile."""
        assert job.source is not None  # noqa: S101 (a running job has its source)
        for points in self._pages(job.source, job.page_size):
            ids = [p.id for p in points]
            in_target = {p.id: p for p in self.store.retrieve(job.target, ids)}
            for point in points:
                copy = in_target.get(point.id)
                if copy is not None:
                    self._copy_metadata(job.target, point, copy)
            tried = self.jobs.failed_among(job.job_id, ids)
            missing = [p for p in points if p.id not in in_target and p.id not in tried]
            done, failures = self._embed(job, missing)
            if done or failures:
                self.jobs.add_outcomes(job.job_id, done=done, failures=failures)
        return self.jobs.require(job.job_id)

    def _copy_metadata(self, target: str, source: StoredPoint, copy: StoredPoint) -> None:
        # A payload update may have reached the target before the page copied the old payload.
        wanted = _user_metadata(source.payload)
        if any(copy.payload.get(key) != value for key, value in wanted.items()):
            self.store.update_item_payload(target, source.item_id, wanted)


def _failure(point: StoredPoint, reason: str, message: str) -> ReindexFailure:
    uri = point.payload.get("source_uri")
    return ReindexFailure(
        point_id=point.id,
        item_id=point.item_id,
        source_uri=uri if isinstance(uri, str) else "",
        reason=reason,
        message=message,
    )


def _hint(job: ReindexJob) -> str:
    if any(failure.reason == "forbidden_path" for failure in job.failures):
        return (
            " Images ingested from a folder are read again from their file:// URIs: add those "
            "folders to LOOKALIKE_SOURCES__FILE_ROOTS on the workers."
        )
    return ""
