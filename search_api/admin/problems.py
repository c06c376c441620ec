"""Every failure as a readable message on the page: the API's error mapping, in words.

Statuses and codes come from ``search_api.errors`` (the API's mapping), so the page and the
API never disagree on what a failure is; this module adds a title and, where it helps, what
to do next. Anything unexpected is logged with its traceback and shown as one sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
from flask import Response, current_app, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ingest.errors import CollectionNotFound, InvalidImage
from search_api.web.errors import (
    ApiError,
    Classified,
    classify,
    error_response,
    unknown_model,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_TITLES = {
    "bad_request": "Bad request",
    "csrf_failed": "Form expired",
    "unauthorized": "Not signed in",
    "forbidden": "Not allowed",
    "not_found": "Not found",
    "item_not_found": "No such item",
    "model_not_found": "Unknown model",
    "collection_not_found": "Nothing ingested yet",
    "collection_mismatch": "Collection built by another model",
    "job_not_found": "No such duplicate job",
    "dead_letter_not_found": "No such dead letter",
    "invalid_image": "Not an image we can read",
    "invalid_query": "Query not possible",
    "too_many_points": "Too many points",
    "validation_error": "Invalid input",
    "payload_too_large": "Upload too large",
    "too_many_images": "Too many images",
    "store_rejected": "The vector store refused the query",
    "store_unavailable": "Vector store unavailable",
    "queue_unavailable": "Queue unavailable",
    "model_unavailable": "Model unavailable",
    "format_unavailable": "Export format not available",
    "internal_error": "Something went wrong",
}

_HINTS = {
    "collection_not_found": "Upload images on the Ingestion page to build this model's collection.",
    "model_not_found": "Choose another model, or install this one with `lookalike models fetch`.",
    "store_unavailable": "Check that Qdrant is running (LOOKALIKE_QDRANT_URL), then reload.",
    "queue_unavailable": "Check that Redis is running (LOOKALIKE_REDIS_URL), then reload.",
    "too_many_points": "Narrow the filters, then draw the map again.",
    "csrf_failed": "Reload the page and submit the form again.",
}


@dataclass(frozen=True)
class Problem:
    """A failure as the page shows it: status, machine code, title, sentence and hint."""

    status: int
    code: str
    message: str

    @property
    def title(self) -> str:
        """A short heading for the failure."""
        return _TITLES.get(self.code, "Request failed")

    @property
    def hint(self) -> str | None:
        """What the admin can do about it, if there is something."""
        return _HINTS.get(self.code)

    @property
    def text(self) -> str:
        """Message and hint as one line (for flashed messages)."""
        return f"{self.message} {self.hint}" if self.hint else self.message


def _is_csrf_error(error: Exception) -> bool:
    # flask_wtf is untyped; its CSRFError is a BadRequest recognisable by name.
    return type(error).__name__ == "CSRFError"


def problem_of(error: Exception) -> Problem:
    """The readable form of any exception a view may meet (statuses and codes: the API's table)."""
    if isinstance(error, ApiError):
        return Problem(error.status, error.code, error.message)
    if _is_csrf_error(error):
        return Problem(
            400, "csrf_failed", "The form expired or did not come from this page (CSRF check)."
        )
    if isinstance(error, RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        return Problem(
            413,
            "payload_too_large",
            f"The upload is larger than the {limit // (1024 * 1024)} MB a request may carry "
            "(LOOKALIKE_API__MAX_UPLOAD_BYTES): send fewer or smaller files.",
        )
    if isinstance(error, HTTPException):
        status = error.code or 500
        return Problem(
            status, "not_found" if status == 404 else "bad_request", error.description or error.name
        )
    classified = classify(error)
    if classified is None:
        log.error("admin page error", exc_info=error)
        return Problem(500, "internal_error", "Internal error; the details are in the server log.")
    return Problem(classified.status, classified.code, _sentence(error, classified))


def _sentence(error: Exception, classified: Classified) -> str:
    """The page's wording of a classified failure (the API's message, where it reads well)."""
    if isinstance(error, InvalidImage):
        return f"Not an image we can read: {error.message}."
    if isinstance(error, ValidationError):
        listed = "; ".join(f"{e['field']}: {e['message']}" for e in classified.details["errors"])
        return f"Invalid input ({listed})."
    if isinstance(error, redis.RedisError):
        log.warning("Redis unavailable: %s", error)
        return f"The queue (Redis) failed: {error}."
    if isinstance(error, CollectionNotFound):
        # The store only knows the collection is missing; the registry says why, if it can.
        refusal = unknown_model(error.model_id)
        return classified.message if refusal is None else str(refusal)
    return classified.message


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A section's result, or the problem that kept it from being shown."""

    value: T | None = None
    problem: Problem | None = None


def attempt(compute: Callable[[], T]) -> Outcome[T]:
    """Run one section of a page: a failure there is shown there, the rest of the page stays."""
    try:
        return Outcome(value=compute())
    except Exception as error:  # every failure becomes a message, never a stack trace
        return Outcome(problem=problem_of(error))


def wants_json() -> bool:
    """A script's request (the page's polling), answered with the API's error body."""
    return request.path.endswith(".json") or request.accept_mimetypes.best == "application/json"


def render_problem(problem: Problem, **context: Any) -> tuple[str | Response, int]:
    """The error page (or JSON error body for scripts) of a problem."""
    if wants_json():
        return error_response(problem.status, problem.code, problem.message), problem.status
    return render_template("admin/error.html", problem=problem, **context), problem.status
