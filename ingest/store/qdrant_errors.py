"""qdrant-client's failures as the store's small exception set (transient or not)."""

from __future__ import annotations

import grpc  # type: ignore[import-untyped]
import httpx
from qdrant_client.common.client_exceptions import QdrantException, ResourceExhaustedResponse
from qdrant_client.http.exceptions import (
    ApiException,
    ResponseHandlingException,
    UnexpectedResponse,
)

from ingest.errors import StoreError, StoreUnavailable

# What qdrant-client raises when the backend fails; anything else is a bug and propagates as is.
BACKEND_ERRORS = (ApiException, QdrantException, httpx.TransportError, grpc.RpcError)


_TRANSIENT_GRPC_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)


def _is_transient(exc: Exception) -> bool:
    """Whether a retry later may succeed (server down, overloaded, timed out)."""
    if isinstance(exc, ResponseHandlingException):
        return isinstance(exc.source, httpx.TransportError)
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, ResourceExhaustedResponse | httpx.TransportError):
        return True
    if isinstance(exc, grpc.RpcError):
        return exc.code() in _TRANSIENT_GRPC_CODES
    return False


def as_store_error(exc: Exception, where: str) -> StoreError:
    """The Lookalike exception for a qdrant-client failure."""
    if _is_transient(exc):
        cause = exc.source if isinstance(exc, ResponseHandlingException) else exc
        return StoreUnavailable(
            f"Qdrant at {where} is unavailable ({type(cause).__name__}: {cause})".strip()
        )
    return StoreError(f"Qdrant at {where} refused the request: {exc}")
