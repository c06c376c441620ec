"""One re-index job's steps: a page re-embedded, reconciliation, and the alias switch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ingest.errors import InvalidImage, LookalikeError, SourceUnavailable, StoreUnavailable
from ingest.images.decode import sha256_hex
from ingest.images.sources import SourceResolver
from ingest.ingestion.pipeline import (
    ImageJob,
    PreparedImage,
    embed_and_store,
    prepare_image,
)
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import ModelRuntime
from ingest.reindex.checks import ReindexRefused, _hint, check_reindex, same_model_message
from ingest.state.reindex_jobs import ReindexJobNotFound, ReindexJobs, _now
from ingest.store.base import SYSTEM_PAYLOAD_KEYS, VectorStore, scroll_pages
from ingest.store.current import current_model_id
from schemas.points import StoredPoint
from schemas.reindex import ReindexFailure, ReindexJob, ReindexState
from schemas.settings import Settings

RuntimeLoader = Callable[[str], ModelRuntime]


def _user_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in SYSTEM_PAYLOAD_KEYS}


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
        return (page for page in scroll_pages(self.store, model_id, page_size=page_size) if page)

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
