"""The Flask app factory: ``create_app(settings, services=...)``."""

from __future__ import annotations

import logging
import math
import os
import sys
import weakref
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from schemas.settings import Settings
from schemas.settings_errors import BAD_SETTINGS_STATUS, InvalidSettings, read_settings
from search_api.admin import register_admin
from search_api.api import register_api
from search_api.web.errors import MODELS_DIR_CONFIG, register_error_handlers
from search_api.web.metrics import ApiMetrics
from search_api.web.services import EXTENSION, Services

log = logging.getLogger(__name__)

# Gunicorn restarts a worker that exits with any other status, forever; 3 ("worker failed to
# boot") stops its master instead.
GUNICORN_BOOT_ERROR = 3


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class StrictJSONProvider(DefaultJSONProvider):
    """Request bodies are RFC 8259 JSON: no NaN/Infinity, no overflowing floats; any
    refusal, deep nesting included, is a ValueError (a 422), never a crash."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse strictly; Python's parser would accept NaN and recurse without bound."""
        kwargs.setdefault("parse_constant", _no_constant)
        kwargs.setdefault("parse_float", _finite)
        try:
            return super().loads(s, **kwargs)
        except RecursionError as error:
            raise ValueError("JSON nested too deeply") from error


def settings_from_environment() -> Settings:
    """The settings of LOOKALIKE_* variables for an app a server builds itself (gunicorn's
    ``create_app()``); bad ones print one line each and end the process."""
    try:
        return read_settings()
    except InvalidSettings as error:
        for line in error.lines:
            print(line, file=sys.stderr, flush=True)
        # The arbiter sets SERVER_SOFTWARE before it loads the app, in its workers or (with
        # --preload) in itself.
        under_gunicorn = os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")
        raise SystemExit(GUNICORN_BOOT_ERROR if under_gunicorn else BAD_SETTINGS_STATUS) from None


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """A ready app; the store and Redis are opened on first use, closed with the app."""
    owned = services is None
    if services is None:
        services = Services(settings or settings_from_environment())
    elif settings is not None and settings is not services.settings:
        raise ValueError("pass settings or services (which carry their settings), not both")
    settings = services.settings
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_upload_bytes
    app.config[MODELS_DIR_CONFIG] = settings.models_dir
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False  # keep the schemas' field order in responses
    app.extensions[EXTENSION] = services
    if owned:
        # Closed when the app goes away or the process exits (the embedded store is owned).
        weakref.finalize(app, services.close)
    register_error_handlers(app)
    ApiMetrics().install(app)
    register_api(app)
    register_admin(app)
    if services.keys.open:
        log.warning(
            "no API keys configured (LOOKALIKE_API__KEYS): the API is OPEN, anyone who can "
            "reach it may search, upload and delete; configure keys outside development"
        )
    return app
