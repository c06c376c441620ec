"""Collections and models (what is stored, with which model), and dead letters."""

from __future__ import annotations

from flask import Blueprint

from ingest.errors import ExtraNotInstalled
from ingest.evaluation.report import last_evaluation
from ingest.store.current import current_model_id, enabled_model_ids
from ingest.vector_export.plan import plan_export
from ingest.vector_export.run import check_format_available
from schemas.api.exports import ExportQuery
from schemas.api.ingest import DeadLetterList, DeadLetterView, RetriedEvents
from schemas.api.status import CollectionList, ModelInfo, ModelList
from schemas.evaluation import EvaluationRecord
from schemas.models import MODEL_ID_PATTERN, is_model_id
from schemas.settings import ApiRole
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.web.downloads import MEDIA_TYPES, Download, export_download
from search_api.web.errors import ApiError, query_errors
from search_api.web.services import current_services

bp = Blueprint("admin", __name__, url_prefix=API_PREFIX)


@bp.get("/collections")
@endpoint(ApiRole.SEARCH, CollectionList, tags=("collections",))
def collections() -> CollectionList:
    """Every collection: model, dimension, fingerprint and number of points."""
    services = current_services()
    return CollectionList(
        default_model=current_model_id(services.settings, services.store),
        collections=services.store.collections(),
    )


@bp.get("/collections/<model_id>/export")
@endpoint(
    ApiRole.ADMIN,
    None,
    errors=(404,),
    tags=("collections",),
    media_type=tuple(MEDIA_TYPES.values()),
    path_patterns={"model_id": MODEL_ID_PATTERN},
)
def export_collection(model_id: str, query: ExportQuery) -> Download:
    """Download a collection's embeddings, or those of the points matching `filter`.

    `jsonl` streams out as the collection is read; `npy` (a zip of the matrix and its
    sidecar) and `parquet` are written to a temporary file on the server first, then sent.
    Points added or deleted during the download may or may not be in it.
    """
    if not is_model_id(model_id):  # no collection can be named after it
        raise ApiError(404, "model_not_found", f"no model {model_id[:100]!r}")
    try:
        check_format_available(query.format)
    except ExtraNotInstalled as error:
        raise ApiError(503, "format_unavailable", str(error), {"field": "format"}) from error
    store = current_services().store
    with query_errors():  # no collection: a 404; a filter the store refuses: a 422
        plan = plan_export(store, model_id, query.filter)
    return export_download(store, plan, query.format)


@bp.get("/models")
@endpoint(ApiRole.SEARCH, ModelList, tags=("collections",))
def models() -> ModelList:
    """Installed models with their dimension, fingerprint and collection."""
    services = current_services()
    settings = services.settings
    by_model = {info.model_id: info for info in services.store.collections()}
    current = current_model_id(settings, services.store)
    enabled = set(enabled_model_ids(settings, services.store))
    return ModelList(
        models=[
            ModelInfo(
                id=manifest.spec.id,
                dimension=manifest.spec.dimension,
                fingerprint=manifest.fingerprint,
                random_weights=manifest.random_weights,
                default=manifest.spec.id == current,
                enabled=manifest.spec.id in enabled,
                duplicate_threshold=manifest.duplicate_threshold,
                collection=by_model.get(manifest.spec.id),
            )
            for manifest in services.registry.installed()
        ]
    )


@bp.get("/models/<model_id>/evaluation")
@endpoint(ApiRole.SEARCH, EvaluationRecord, errors=(404,), tags=("collections",))
def model_evaluation(model_id: str) -> EvaluationRecord:
    """A model's last evaluation (`lookalike evaluate`): retrieval and near-duplicate quality."""
    registry = current_services().registry
    if not is_model_id(model_id):  # never a path outside the models directory
        raise ApiError(404, "model_not_found", f"no model {model_id[:100]!r}")
    registry.spec(model_id)  # an unknown model is a 404 model_not_found
    record = last_evaluation(registry, model_id)
    if record is None:
        raise ApiError(
            404,
            "evaluation_not_found",
            f"model {model_id!r} has not been evaluated: run `lookalike evaluate --model "
            f"{model_id} ...`",
        )
    return record


@bp.get("/deadletters")
@endpoint(ApiRole.ADMIN, DeadLetterList, tags=("dead letters",))
def dead_letters() -> DeadLetterList:
    """Events that could not be ingested as they were, with their reason, oldest first."""
    letters = [
        DeadLetterView(event_id=event_id, **letter.model_dump())
        for event_id, letter in current_services().tracker.dead_letters()
    ]
    return DeadLetterList(count=len(letters), dead_letters=letters)


@bp.post("/deadletters/<event_id>/retry")
@endpoint(ApiRole.ADMIN, RetriedEvents, status=202, errors=(404,), tags=("dead letters",))
def retry_dead_letter(event_id: str) -> tuple[RetriedEvents, int]:
    """Put one dead letter back on the queue as it was."""
    if not current_services().publisher.retry_dead_letter(event_id):
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {event_id!r}")
    return RetriedEvents(retried=[event_id]), 202


@bp.post("/deadletters/retry")
@endpoint(ApiRole.ADMIN, RetriedEvents, status=202, tags=("dead letters",))
def retry_all_dead_letters() -> tuple[RetriedEvents, int]:
    """Put every dead letter back on the queue."""
    publisher = current_services().publisher
    targets = [event_id for event_id, _ in publisher.tracker.dead_letters()]
    return RetriedEvents(retried=[e for e in targets if publisher.retry_dead_letter(e)]), 202
