"""Near-duplicates of an image or item, and collection-wide duplicate jobs with dismissals."""

from __future__ import annotations

from flask import Blueprint

from ingest.duplicates.matches import item_near_duplicates, near_duplicates
from ingest.duplicates.thresholds import resolve_threshold
from ingest.state.duplicate_jobs import DuplicateJobNotFound
from schemas.api.duplicates import (
    DismissalResult,
    DuplicateJobList,
    DuplicateJobRequest,
    DuplicateJobsQuery,
    DuplicatePageQuery,
    DuplicatePair,
    NearDuplicates,
    NearDuplicatesOfImageForm,
    NearDuplicatesOfItem,
)
from schemas.duplicates import DuplicateJob, DuplicatePage
from schemas.points import MatchCondition, PayloadFilter
from schemas.settings import ApiRole
from search_api.api.common import embed_image, model_for, read_upload
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.producer.jobs import enqueue_find_duplicates
from search_api.web.errors import ApiError, invalid_field, query_errors
from search_api.web.services import current_services

bp = Blueprint("duplicates", __name__, url_prefix=f"{API_PREFIX}/duplicates")
TAGS = ("duplicates",)


def _threshold(model_id: str, requested: float | None) -> float:
    return resolve_threshold(current_services().registry, model_id, requested)


@bp.post("/image")
@endpoint(ApiRole.SEARCH, NearDuplicates, errors=(404, 413, 415), tags=TAGS)
def of_image(form: NearDuplicatesOfImageForm) -> NearDuplicates:
    """Stored images that near-duplicate an uploaded image ("is this already in the catalog?")."""
    services = current_services()
    model_id = model_for(form.model_id)
    threshold = _threshold(model_id, form.threshold)
    vector = embed_image(services, model_id, read_upload(form.image, "image"), "image")
    hits = near_duplicates(
        services.store, model_id, vector=vector, threshold=threshold, limit=form.limit
    )
    return NearDuplicates(model_id=model_id, threshold=threshold, hits=hits)


@bp.post("/item")
@endpoint(ApiRole.SEARCH, NearDuplicates, errors=(404, 415), tags=TAGS)
def of_item(json: NearDuplicatesOfItem) -> NearDuplicates:
    """Images of other items near-duplicating any image of this item (dismissed pairs left out)."""
    services = current_services()
    model_id = model_for(json.model_id)
    threshold = _threshold(model_id, json.threshold)
    if services.store.count(model_id, filter=_only(json.item_id)) == 0:
        raise ApiError(404, "item_not_found", f"no item {json.item_id!r} in {model_id!r}")
    hits = item_near_duplicates(
        services.store,
        model_id,
        json.item_id,
        threshold=threshold,
        limit=json.limit,
        hidden=services.duplicates.hidden_pairs(model_id),
    )
    return NearDuplicates(model_id=model_id, threshold=threshold, hits=hits)


def _only(item_id: str) -> PayloadFilter:
    return PayloadFilter(must=[MatchCondition(key="item_id", value=item_id)])


@bp.post("/jobs")
@endpoint(ApiRole.ADMIN, DuplicateJob, status=202, errors=(404, 415), tags=TAGS)
def start_job(json: DuplicateJobRequest) -> tuple[DuplicateJob, int]:
    """Start finding every duplicate group of a collection in the background (a worker runs it)."""

    services = current_services()
    model_id = model_for(json.model_id)
    threshold = _threshold(model_id, json.threshold)
    services.store.count(model_id)  # 404 now for a collection that does not exist
    job_id = enqueue_find_duplicates(
        services.celery,
        services.duplicates,
        model_id,
        threshold=threshold,
        transitive=json.transitive,
    )
    return _job(job_id), 202


def _job(job_id: str) -> DuplicateJob:
    job = current_services().duplicates.job(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no duplicate job {job_id!r}")
    return job


@bp.get("/jobs")
@endpoint(ApiRole.ADMIN, DuplicateJobList, tags=TAGS)
def list_jobs(query: DuplicateJobsQuery) -> DuplicateJobList:
    """A model's recent duplicate jobs, newest first."""
    return DuplicateJobList(jobs=current_services().duplicates.jobs(model_for(query.model_id)))


@bp.get("/jobs/<job_id>")
@endpoint(ApiRole.ADMIN, DuplicateJob, errors=(404,), tags=TAGS)
def job_status(job_id: str) -> DuplicateJob:
    """A job's status and progress: queued, running (points scanned), done or failed."""
    return _job(job_id)


@bp.get("/jobs/<job_id>/groups")
@endpoint(ApiRole.ADMIN, DuplicatePage, errors=(404,), tags=TAGS)
def job_groups(job_id: str, query: DuplicatePageQuery) -> DuplicatePage:
    """A page of a finished job's groups, biggest first; page on with `next_offset`."""
    try:
        with query_errors():
            return current_services().duplicates.page(
                job_id, offset=query.offset, limit=query.limit
            )
    except DuplicateJobNotFound as error:
        raise ApiError(404, "job_not_found", str(error)) from error


@bp.post("/dismissals")
@endpoint(ApiRole.ADMIN, DismissalResult, errors=(415,), tags=TAGS)
def dismiss(json: DuplicatePair) -> DismissalResult:
    """Mark two images as not duplicates: the pair leaves every duplicate result."""
    if json.point_a == json.point_b:
        raise invalid_field("point_b", "a point is always a duplicate of itself")
    changed = current_services().duplicates.mark_not_duplicate(
        model_for(json.model_id), json.point_a, json.point_b
    )
    return DismissalResult(changed=changed)


@bp.delete("/dismissals")
@endpoint(ApiRole.ADMIN, DismissalResult, tags=TAGS)
def undismiss(query: DuplicatePair) -> DismissalResult:
    """Undo a dismissal: the pair counts as duplicates again."""
    changed = current_services().duplicates.unmark_not_duplicate(
        model_for(query.model_id), query.point_a, query.point_b
    )
    return DismissalResult(changed=changed)
