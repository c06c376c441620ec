"""API keys with roles: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

No configured key means an open API (the embedded/dev default): every call is allowed, and
the app says so at startup and in ``/readyz``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Request, g

from schemas.settings import ApiKey, ApiRole
from search_api.web.errors import ApiError

BEARER_SCHEME = "bearer"
HEADER_SCHEME = "apiKey"
# For the OpenAPI document: either header works.
SECURITY: list[dict[str, list[str]]] = [{BEARER_SCHEME: []}, {HEADER_SCHEME: []}]


@dataclass(frozen=True)
class _Key:
    name: str
    digest: bytes
    roles: frozenset[ApiRole]


def _digest(secret: str) -> bytes:
    # Comparing fixed-length digests keeps the key's length out of the timing as well.
    return hashlib.sha256(secret.encode()).digest()


class KeyRing:
    """The configured keys; answers which key a request carries and what it may do."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = [
            _Key(key.name, _digest(key.key.get_secret_value()), frozenset(key.roles))
            for key in keys
        ]

    @property
    def open(self) -> bool:
        """No keys configured: authentication is off."""
        return not self._keys

    def identify(self, presented: str) -> _Key | None:
        """The key matching ``presented``; every key is compared, in constant time each."""
        digest = _digest(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    def authorize(self, request: Request, role: ApiRole) -> None:
        """Raise 401 without a known key, 403 if the key lacks ``role`` (admin has all)."""
        if self.open:
            return
        presented = _presented_key(request)
        if presented is None:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`",
            )
        key = self.identify(presented)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        g.api_key_name = key.name
        if role not in key.roles and ApiRole.ADMIN not in key.roles:
            raise ApiError(
                403,
                "forbidden",
                f"API key {key.name!r} lacks the {role.value!r} role",
                {"required_role": role.value, "roles": sorted(r.value for r in key.roles)},
            )


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None
