"""Liveness, readiness, Prometheus metrics and the OpenAPI document (no API key needed)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ingest.errors import LookalikeError
from ingest.store.current import current_model_id
from schemas.api.status import Check, Health, Readiness
from search_api.api.openapi import API_PREFIX, endpoint, spec
from search_api.web.errors import ApiError
from search_api.web.metrics import current_metrics
from search_api.web.services import Services, current_services

bp = Blueprint("health", __name__)
TAGS = ("health",)


@bp.get("/healthz")
@endpoint(None, Health, tags=TAGS)
def healthz() -> Health:
    """The process is up (no dependency is checked)."""
    return Health()


def _check_redis(services: Services) -> Check:
    try:
        services.redis.ping()
    except Exception as error:  # any failure means "not ready": report its text
        return Check(ok=False, message=f"{type(error).__name__}: {error}")
    return Check(ok=True, message="Redis answers")


def _check_store(services: Services) -> Check:
    try:
        count = len(services.store.collections())
    except LookalikeError as error:
        return Check(ok=False, message=str(error))
    return Check(ok=True, message=f"vector store answers ({count} collections)")


def _check_model(services: Services) -> Check:
    try:
        model_id = current_model_id(services.settings, services.store)
    except LookalikeError:
        model_id = services.settings.default_model  # the store check reports the store
    try:
        runtime = services.runtime(model_id)
    except LookalikeError as error:
        return Check(ok=False, message=str(error))
    return Check(ok=True, message=f"{runtime.manifest.fingerprint} loaded")


@bp.get("/readyz")
@endpoint(None, Readiness, errors=(503,), tags=TAGS)
def readyz() -> Readiness:
    """Redis and the vector store answer and the default model is loaded (else 503)."""
    services = current_services()
    checks = {
        "redis": _check_redis(services),
        "store": _check_store(services),
        "model": _check_model(services),
    }
    ready = all(check.ok for check in checks.values())
    body = Readiness(ready=ready, auth="open" if services.keys.open else "api_keys", checks=checks)
    if not ready:
        failed = ", ".join(name for name, check in checks.items() if not check.ok)
        raise ApiError(503, "not_ready", f"not ready: {failed}", body.model_dump())
    return body


@bp.get("/metrics")
@endpoint(None, None, tags=TAGS)
def metrics() -> Response:
    """Prometheus metrics (text exposition format)."""
    return current_metrics().render(current_services())


@bp.get(f"{API_PREFIX}/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of /api/v1, generated from the pydantic schemas."""
    return jsonify(spec.spec)
