"""The admin blueprint and the helpers its views share (model choice, redirects, forms)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

from flask import Blueprint, request
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]

from ingest.store.current import current_model_id
from schemas.models import is_model_id
from search_api.web.services import Services, current_services

_HERE = Path(__file__).resolve().parent
PREFIX = "/admin"

# Named admin_ui: the API's own "admin" blueprint (collections, dead letters) has that name.
bp = Blueprint(
    "admin_ui",
    __name__,
    url_prefix=PREFIX,
    static_folder=str(_HERE / "static"),
    template_folder=str(_HERE / "templates"),
    static_url_path="/static",
)
# Every form of the page carries a token; installed on the app by ``setup.register_admin``.
csrf = CSRFProtect()

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")

QueryPairs = Sequence[tuple[str, str]]


def services() -> Services:
    """The app's services (store, queue, models), opened lazily by the API's own code."""
    return current_services()


def chosen_model(raw: str | None) -> str:
    """The requested model id, or the current one."""
    svc = services()
    model_id = (raw or "").strip()
    if not is_model_id(model_id):
        model_id = current_model_id(svc.settings, svc.store)
    return model_id


def safe_next(raw: str | None, default: str) -> str:
    """A local /admin path to go back to; anything else (other hosts, schemes) is the default."""
    if not raw or _CONTROL.search(raw):
        return default
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX):
        return default
    if raw.startswith("//"):
        return default
    return raw


def back_to(default: str) -> str:
    """Where a form asked to return to (its ``next`` field), if it is a local admin path."""
    return safe_next(request.form.get("next") or request.args.get("next"), default)


def with_query(path: str, pairs: QueryPairs) -> str:
    """``path`` with a query string of these (repeatable) pairs; empty values left out."""
    kept = [(key, value) for key, value in pairs if value != ""]
    return f"{path}?{urllib.parse.urlencode(kept)}" if kept else path


def form_text(form: Mapping[str, str], name: str, max_length: int = 500) -> str:
    """A trimmed text field of a submitted form, cut at ``max_length``."""
    return (form.get(name) or "").strip()[:max_length]


def parse_float(raw: str | None) -> float | None:
    """A finite float from a form or query field, or None if empty or not a number."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def parse_int(raw: str | None, default: int, *, low: int, high: int) -> int:
    """An int within [low, high] from a query field; the default if absent or malformed."""
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return max(low, min(high, value))
