"""A real worker whose vector store is unreachable while a marker file exists.

Run as ``python -m tests.workers.flaky_worker`` with the usual LOOKALIKE_* variables plus
``LOOKALIKE_TEST_STORE_DOWN_MARKER=<path>``. It wraps the real store from
``ingest.store.current.open_store`` in a thin proxy that raises ``StoreUnavailable`` (what the
Qdrant backend raises when the server is down) from every call a worker makes while the
marker exists, then runs the production ``lookalike worker`` code unchanged. Tests create and
delete the marker to take the store "down" and bring it back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import workers.context
from ingest.errors import StoreUnavailable
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from schemas.models import ModelManifest
from schemas.points import CollectionInfo, NewPoint, StoredPoint
from schemas.settings import Settings
from search_api.cli.stack import run_worker
from tests.workers.queue_support import STORE_DOWN_MARKER_ENV


class FlakyStore:
    """The real store, except that it is "unreachable" while ``marker`` exists."""

    def __init__(self, store: VectorStore, marker: Path) -> None:
        self._store = store
        self._marker = marker

    def _check(self, operation: str) -> None:
        if self._marker.exists():
            raise StoreUnavailable(f"Qdrant is unavailable (injected outage during {operation})")

    def upsert(self, model: ModelManifest, points: Sequence[NewPoint]) -> list[str]:
        """Store points, unless the store is down."""
        self._check("upsert")
        return self._store.upsert(model, points)

    def retrieve(
        self, model_id: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[StoredPoint]:
        """Read points, unless the store is down."""
        self._check("retrieve")
        return self._store.retrieve(model_id, ids, with_vectors=with_vectors)

    def collections(self) -> list[CollectionInfo]:
        """List collections (delete and update events start here), unless the store is down."""
        self._check("collections")
        return self._store.collections()

    def delete_item(self, model_id: str, item_id: str) -> int:
        """Delete an item's points, unless the store is down."""
        self._check("delete_item")
        return self._store.delete_item(model_id, item_id)

    def update_item_payload(self, model_id: str, item_id: str, metadata: dict[str, Any]) -> int:
        """Merge metadata into an item's points, unless the store is down."""
        self._check("update_item_payload")
        return self._store.update_item_payload(model_id, item_id, metadata)

    def __getattr__(self, name: str) -> Any:
        # Everything else (close, count, query, ...) goes straight to the real store.
        return getattr(self._store, name)


def main() -> None:
    """Patch the worker's store factory, then run the real worker (blocks until stopped)."""
    marker = Path(os.environ[STORE_DOWN_MARKER_ENV])

    def open_flaky_store(settings: Settings) -> FlakyStore:
        return FlakyStore(open_store(settings), marker)

    with pytest.MonkeyPatch.context() as patch:
        # Patched before Celery forks its pool, so every worker process inherits it.
        patch.setattr(workers.context, "open_store", open_flaky_store)
        run_worker(Settings(), concurrency=None, loglevel="info")


if __name__ == "__main__":
    main()
