"""One error body for every failure (``{"error": {"code", "message", "details"}}``), and the
one table from exception to HTTP status and error code that the API and the admin page share.

The table, most specific class first (also in the README's API section):

- request validation (spectree, pydantic) -> 422 ``validation_error`` with ``details.field``
- not an image -> 422 ``invalid_image`` with the decoder's ``details.reason``
  (an image over ``LOOKALIKE_IMAGES__MAX_BYTES`` -> 413, reason ``too_many_bytes``)
- bad cursor, too many points to cluster, wrong vector size -> 422
- upload to a model that is not enabled -> 422 ``model_not_enabled`` (listing the enabled ones)
- unknown item, model, collection, event, dead letter, job, route -> 404
- re-index to the model that is already the current one -> 409 ``same_model``
- body over the size limit, too many images -> 413
- missing or unknown API key -> 401; key without the role -> 403
- store or Redis unreachable, model file unusable -> 503
- anything else -> 500 ``internal_error`` (a bug: logged with its traceback)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ingest.errors import (
    CollectionMismatch,
    CollectionNotFound,
    InvalidImage,
    InvalidImageReason,
    ItemNotFound,
    ModelError,
    ModelNotFound,
    QueueUnavailable,
    StoreError,
    StoreUnavailable,
)
from ingest.models.registry import ModelRegistry
from ingest.reindex.checks import ReindexRefused
from ingest.state.duplicate_jobs import DuplicateJobNotFound
from ingest.state.reindex_jobs import ReindexJobNotFound
from schemas.api.common import ErrorBody, ErrorDetail
from search_api.queries.refusals import TooManyPoints

log = logging.getLogger(__name__)

# Where the app keeps its models directory, for telling an unknown model from a known one
# that has no collection yet (without asking the store again while handling its error).
MODELS_DIR_CONFIG = "LOOKALIKE_MODELS_DIR"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

# Exception class -> (status, code); the first class the error is an instance of wins.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (InvalidImage, 422, "invalid_image"),
    (ModelNotFound, 404, "model_not_found"),
    (ModelError, 503, "model_unavailable"),
    (StoreUnavailable, 503, "store_unavailable"),
    (ItemNotFound, 404, "item_not_found"),
    (CollectionMismatch, 422, "collection_mismatch"),
    (CollectionNotFound, 404, "collection_not_found"),
    # Qdrant refused the request as written (e.g. a facet on a field without an index).
    (StoreError, 422, "store_rejected"),
    (QueueUnavailable, 503, "queue_unavailable"),
    (redis.RedisError, 503, "queue_unavailable"),
    (DuplicateJobNotFound, 404, "job_not_found"),
    (ReindexJobNotFound, 404, "job_not_found"),
    (ReindexRefused, 409, "same_model"),
    # The query service refuses impossible input with a ValueError: a 422, not a 500.
    (TooManyPoints, 422, "too_many_points"),
    (ValidationError, 422, "validation_error"),
    (ValueError, 422, "invalid_query"),
)


@dataclass(frozen=True)
class Classified:
    """An exception as the API reports it: status, code, details and message."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def classify(error: Exception) -> Classified | None:
    """The table's answer for ``error``; None for an unexpected one (a 500)."""
    rule = next((rule for rule in ERROR_TABLE if isinstance(error, rule[0])), None)
    if rule is None:
        return None
    _, status, code = rule
    message = str(error)
    details: dict[str, Any] = {}
    if isinstance(error, InvalidImage):
        refused = image_error(error)
        status, message, details = refused.status, refused.message, refused.details
    elif isinstance(error, CollectionNotFound) and unknown_model(error.model_id) is not None:
        status, code = 404, "model_not_found"
    elif isinstance(error, ValidationError):
        details = field_errors(error.errors(include_url=False, include_input=False))
        message = "the request is not valid"
    elif isinstance(error, redis.RedisError):
        message = f"the queue (Redis) failed: {error}"
    return Classified(status, code, message, details)


def unknown_model(model_id: str) -> ModelNotFound | None:
    """The registry's refusal of a model id; None if it knows the model (or cannot tell)."""
    models_dir = current_app.config.get(MODELS_DIR_CONFIG)
    if models_dir is None:
        return None  # cannot tell: keep "no collection"
    try:
        ModelRegistry(models_dir).spec(model_id)
    except ModelNotFound as refusal:
        return refusal
    return None


class ApiError(Exception):
    """An error the API reports as is: status, code, message and details."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    """A JSON response carrying the error body."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details or {}))
    response = jsonify(body.model_dump(mode="json"))
    response.status_code = status
    return response


def field_errors(errors: Sequence[Any]) -> dict[str, Any]:
    """Details of a pydantic validation failure: the first bad field and every error."""
    listed = [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "message": error["msg"],
            "type": error["type"],
        }
        for error in errors
    ]
    return {"field": listed[0]["field"] if listed else "body", "errors": listed}


def validation_error(error: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming the offending field (``prefix`` is prepended to nested locations)."""
    details = field_errors(error.errors(include_url=False, include_input=False))
    if prefix:
        for entry in details["errors"]:
            entry["field"] = f"{prefix}.{entry['field']}"
        details["field"] = f"{prefix}.{details['field']}"
    return ApiError(422, "validation_error", "the request is not valid", details)


def invalid_field(field: str, message: str, code: str = "validation_error") -> ApiError:
    """A 422 about one field, checked by a view rather than by the schema."""
    return ApiError(
        422, code, message, {"field": field, "errors": [{"field": field, "message": message}]}
    )


@contextmanager
def query_errors() -> Iterator[None]:
    """Turn a query service's refusal of its input (a ValueError) into a 422, not a 500."""
    try:
        yield
    except ValueError as error:
        classified = classify(error)
        assert classified is not None  # noqa: S101 (ValueError is in the table)
        raise ApiError(
            classified.status, classified.code, classified.message, classified.details
        ) from error


def image_error(error: InvalidImage, context: str = "", **details: Any) -> ApiError:
    """A refused image: 413 if it is too big, else 422; the decoder's reason in details."""
    status = 413 if error.reason is InvalidImageReason.TOO_MANY_BYTES else 422
    message = f"{context}: {error.message}" if context else error.message
    return ApiError(status, "invalid_image", message, {"reason": error.reason.value, **details})


def register_error_handlers(app: Flask) -> None:
    """Make every failure, Flask's own included, answer with the error body."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, error.details)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="lookalike"'
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = error_response(
            status, _HTTP_CODES.get(status, "http_error"), error.description or error.name
        )
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _table(error: Exception) -> Response:
        classified = classify(error)
        # ValueErrors are the query service's refusals only inside ``query_errors``; anywhere
        # else one is a bug (TooManyPoints says what it refused wherever it is raised).
        refusal_outside_a_query = isinstance(error, ValueError) and not isinstance(
            error, TooManyPoints
        )
        if classified is None or refusal_outside_a_query:
            log.exception("unhandled error")
            return error_response(500, "internal_error", "internal error (logged on the server)")
        if isinstance(error, redis.RedisError):
            log.warning("Redis unavailable: %s", error)
        return error_response(
            classified.status, classified.code, classified.message, classified.details
        )
