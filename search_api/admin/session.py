"""Signing in to the admin page with an admin API key, the session, and the guard on /admin.

The session cookie never holds the key: it holds the key's name and an HMAC (under the app's
secret key) of the key's digest, checked against the configured keys on every request, so
removing or rotating a key signs its sessions out at once. With no key configured (the open
API of development), everyone is let in and every page says so in a banner.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from schemas.settings import ApiRole
from search_api.admin.blueprint import bp, csrf, safe_next, services
from search_api.admin.problems import Problem, render_problem, wants_json

SESSION_KEY = "admin"
OPEN_MODE_NAME = "open mode"
# Reachable without signing in: the sign-in page itself and the stylesheet/script it uses.
PUBLIC_ENDPOINTS = frozenset({"admin_ui.sign_in", "admin_ui.static"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Pages may embed only what /admin itself serves: no inline script, no other origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Admin:
    """Who is signed in: a key's name, or everyone in open mode."""

    name: str
    open_mode: bool


def _secret() -> bytes:
    secret = current_app.secret_key
    return secret.encode() if isinstance(secret, str) else bytes(secret or b"")


def _fingerprint(key_digest: bytes) -> str:
    """What the session keeps of a key: an HMAC of its digest, useless without the server."""
    return hmac.new(_secret(), key_digest, hashlib.sha256).hexdigest()


def _admin_fingerprints() -> dict[str, str]:
    """Fingerprint -> name of every configured key holding the admin role."""
    found = {}
    for key in services().settings.api.keys:
        if ApiRole.ADMIN in key.roles:
            digest = hashlib.sha256(key.key.get_secret_value().encode()).digest()
            found[_fingerprint(digest)] = key.name
    return found


def current_admin() -> Admin | None:
    """The signed-in admin of this request, or None."""
    if services().keys.open:
        return Admin(OPEN_MODE_NAME, open_mode=True)
    stored = session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return None
    fingerprint, since = stored.get("fp"), stored.get("since")
    if not isinstance(fingerprint, str) or not isinstance(since, int | float):
        return None
    if time.time() - since > services().settings.admin.session_hours * 3600:
        return None
    # Compared in constant time against every admin key: a removed key's sessions end.
    name = None
    for known, key_name in _admin_fingerprints().items():
        if hmac.compare_digest(known, fingerprint):
            name = key_name
    return None if name is None else Admin(name, open_mode=False)


def check_key(presented: str) -> tuple[Admin | None, Problem | None]:
    """Sign-in check: the admin, or why the key is refused (unknown, or lacks the role)."""
    key = services().keys.identify(presented)
    if key is None:
        return None, Problem(401, "unauthorized", "That key is not valid: check it and try again.")
    if ApiRole.ADMIN not in key.roles:
        roles = ", ".join(sorted(role.value for role in key.roles))
        return None, Problem(
            403,
            "forbidden",
            f"The key {key.name!r} is valid but has the {roles} role, not admin: sign in with "
            "an admin key.",
        )
    session.clear()
    session[SESSION_KEY] = {"fp": _fingerprint(key.digest), "since": int(time.time())}
    return Admin(key.name, open_mode=False), None


@bp.before_request
def guard() -> Any:
    """CSRF check on every form, then sign-in on every page but the sign-in page."""

    if request.method not in _SAFE_METHODS:
        csrf.protect()  # raises CSRFError, shown by the blueprint's error handler
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    admin = current_admin()
    if admin is None:
        if wants_json():
            problem = Problem(401, "unauthorized", "Your sign-in has ended: sign in again.")
            return render_problem(problem)
        return redirect(url_for("admin_ui.sign_in", next=request.full_path.rstrip("?")))
    g.admin = admin
    return None


@bp.after_request
def security_headers(response: Response) -> Response:
    """No framing, no sniffing, no caching of pages that show the catalog."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """The sign-in form: an admin API key from LOOKALIKE_API__KEYS."""
    target = safe_next(request.values.get("next"), url_for("admin_ui.search"))
    if current_admin() is not None and request.method == "GET":
        return redirect(target)
    problem = None
    if request.method == "POST":
        presented = (request.form.get("key") or "").strip()
        if not presented:
            problem = Problem(422, "validation_error", "Enter an admin key.")
        else:
            admin, problem = check_key(presented)
            if admin is not None:
                return redirect(target, code=303)
    status = problem.status if problem else 200
    return render_template("admin/sign_in.html", problem=problem, next=target), status


@bp.post("/sign-out")
def sign_out() -> Response:
    """End the session."""
    session.clear()
    return redirect(url_for("admin_ui.sign_in"), code=303)
