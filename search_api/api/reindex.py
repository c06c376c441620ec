"""Re-indexing every stored image into another model's collection, in the background."""

from __future__ import annotations

from flask import Blueprint

from ingest.reindex.checks import ReindexRefused, check_reindex
from ingest.state.reindex_jobs import ReindexJobs
from schemas.reindex import ReindexJob, ReindexRequest
from schemas.settings import ApiRole
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.producer.jobs import enqueue_reindex
from search_api.web.errors import ApiError
from search_api.web.services import Services, current_services

bp = Blueprint("reindex", __name__, url_prefix=API_PREFIX)
TAGS = ("collections",)


def _jobs(services: Services) -> ReindexJobs:
    return services.reindex_jobs


@bp.post("/reindex")
@endpoint(ApiRole.ADMIN, ReindexJob, status=202, errors=(404, 409, 415), tags=TAGS)
def start(json: ReindexRequest) -> tuple[ReindexJob, int]:
    """Re-embed every image of the current collection with another installed model.

    Workers do it page by page while searches keep using the current collection; when every
    image is in the new one, the collection alias switches to it (unless images failed and
    `allow_failures` is false). 404: model not installed or nothing stored yet; 409: it is
    already the current model.
    """

    services = current_services()
    try:
        source, _ = check_reindex(services.settings, services.store, services.registry, json.to)
    except ReindexRefused as error:
        raise ApiError(409, "same_model", str(error), {"field": "to"}) from error
    job = enqueue_reindex(
        services.celery,
        _jobs(services),
        json.to,
        source=source,
        drop_old=json.drop_old,
        allow_failures=json.allow_failures,
    )
    return job, 202


@bp.get("/reindex/<job_id>")
@endpoint(ApiRole.ADMIN, ReindexJob, errors=(404,), tags=TAGS)
def status(job_id: str) -> ReindexJob:
    """A re-index job: state, progress (done, skipped, failed with reasons), switched or not."""
    job = _jobs(current_services()).job(job_id) if len(job_id) <= 64 else None
    if job is None:
        raise ApiError(404, "job_not_found", f"no re-index job {job_id[:64]!r}")
    return job
