"""qdrant-client's local mode: in RAM for throw-away stores, on disk for stores written by
Lookalike before the embedded default became Qdrant's engine (``migration`` reads them)."""

from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient

from ingest.errors import StoreUnavailable

MEMORY = ":memory:"


def local_client(location: str) -> QdrantClient:
    """Open qdrant-client's local mode in RAM or in a directory (created if needed)."""
    if location == MEMORY:
        return QdrantClient(location=MEMORY)
    Path(location).mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=location)
    except RuntimeError as exc:
        # qdrant-client takes an exclusive file lock on the directory and raises a bare
        # RuntimeError when someone else holds it.
        raise StoreUnavailable(
            f"the local vector store at {location} is already open in another process "
            "(local mode allows one process per directory): stop that process, or run a "
            "Qdrant server and set LOOKALIKE_QDRANT_URL"
        ) from exc
