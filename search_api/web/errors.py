"""One error body for every failure: ``{"error": {"code", "message", "details"}}``.

Mapping (also in the README's API section):

- request validation (spectree, pydantic) -> 422 ``validation_error`` with ``details.field``
- not an image -> 422 ``invalid_image`` with the decoder's ``details.reason``
  (an image over ``LOOKALIKE_IMAGES__MAX_BYTES`` -> 413, reason ``too_many_bytes``)
- bad cursor, too many points to cluster, wrong vector size -> 422
- unknown item, model, collection, event, dead letter, route -> 404
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
from typing import Any

import redis
from flask import Flask, Response, g, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ingest.errors import (
    CollectionMismatch,
    InvalidImage,
    InvalidImageReason,
    ItemNotFound,
    ModelError,
    ModelNotFound,
    StoreError,
    StoreUnavailable,
)
from schemas.api import ErrorBody, ErrorDetail

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


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
        if isinstance(error, ValidationError):
            raise validation_error(error) from error
        code = "too_many_points" if type(error).__name__ == "TooManyPoints" else "invalid_query"
        raise ApiError(422, code, str(error)) from error


def image_error(error: InvalidImage, context: str = "", **details: Any) -> ApiError:
    """A refused image: 413 if it is too big, else 422; the decoder's reason in details."""
    status = 413 if error.reason is InvalidImageReason.TOO_MANY_BYTES else 422
    message = f"{context}: {error.message}" if context else error.message
    return ApiError(status, "invalid_image", message, {"reason": error.reason.value, **details})


def _store_error(error: StoreError) -> tuple[int, str]:
    """Status and code of a store refusal: a missing collection is a 404, else the input."""
    if isinstance(error, StoreUnavailable):
        return 503, "store_unavailable"
    if isinstance(error, ItemNotFound):
        return 404, "item_not_found"
    if isinstance(error, CollectionMismatch):
        return 422, "collection_mismatch"
    model_id = g.get("model_id")
    if model_id is not None and not _collection_exists(model_id):
        return 404, "collection_not_found" if _model_known(model_id) else "model_not_found"
    # Qdrant refused the request as written (e.g. a facet on a field without an index).
    return 422, "store_rejected"


def _collection_exists(model_id: str) -> bool:
    from search_api.web.services import current_services

    try:
        return any(c.model_id == model_id for c in current_services().store.collections())
    except StoreError:
        return True  # cannot tell: keep the original error


def _model_known(model_id: str) -> bool:
    from search_api.web.services import current_services

    try:
        current_services().registry.spec(model_id)
    except ModelNotFound:
        return False
    return True


def status_for_error(error: Exception) -> tuple[int, str, dict[str, Any]]:
    """HTTP status, error code and details of one of Lookalike's exceptions (API and admin)."""
    if isinstance(error, InvalidImage):
        refused = image_error(error)
        return refused.status, refused.code, refused.details
    if isinstance(error, ModelNotFound):
        return 404, "model_not_found", {}
    if isinstance(error, ModelError):
        return 503, "model_unavailable", {}
    if isinstance(error, StoreError):
        status, code = _store_error(error)
        return status, code, {}
    return 500, "internal_error", {}


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

    @app.errorhandler(StoreError)
    @app.errorhandler(ModelError)
    @app.errorhandler(InvalidImage)
    def _lookalike(error: Exception) -> Response:
        status, code, details = status_for_error(error)
        return error_response(status, code, str(error), details)

    @app.errorhandler(redis.RedisError)
    def _redis(error: redis.RedisError) -> Response:
        log.warning("Redis unavailable: %s", error)
        return error_response(503, "queue_unavailable", f"the queue (Redis) failed: {error}")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        from search_api.cli.embedded.redis_server import EmbeddedRedisError

        if isinstance(error, EmbeddedRedisError):
            return error_response(503, "queue_unavailable", str(error))
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error (logged on the server)")
