"""Background HNSW builds for the embedded store, so that nobody has to ask for them.

A thread looks at every collection every few seconds and builds the index of one that has
enough vectors outside it (``EdgeStore.unindexed_models``) once writes to it have paused: a
bulk load or a reindex is indexed once at the end, not after every batch. The build itself
runs in a child process on a copy (``Collections.build_index``), so queries and ingestion go
on meanwhile; closing the store cancels a build under way.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from ingest.errors import StoreError

log = logging.getLogger(__name__)

# How often the thread looks, and how long a collection must go unwritten before its index
# is built (an upload batch arrives every second or two while a queue drains).
CHECK_EVERY_S = 5.0
QUIET_FOR_S = 10.0


class Indexable(Protocol):
    """What the indexer needs of the store."""

    def unindexed_models(self, quiet_for: float) -> list[str]:
        """Models whose collections would gain from an index build now."""
        ...

    def build_index(self, model_id: str) -> bool:
        """Build the collection's index (blocks until done or cancelled)."""
        ...


class BackgroundIndexer:
    """A daemon thread that builds indexes when collections need them (``stop`` ends it)."""

    def __init__(
        self,
        store: Indexable,
        *,
        check_every: float = CHECK_EVERY_S,
        quiet_for: float = QUIET_FOR_S,
    ) -> None:
        self.store = store
        self.check_every = check_every
        self.quiet_for = quiet_for
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lookalike-indexer", daemon=True)

    def start(self) -> None:
        """Start looking."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.check_every):
            try:
                waiting = self.store.unindexed_models(self.quiet_for)
            except StoreError:
                continue  # e.g. closed meanwhile; the loop ends at the next wait
            for model_id in waiting:
                if self._stopped.is_set():
                    return
                try:
                    if self.store.build_index(model_id):
                        log.info("built the HNSW index of model %s's collection", model_id)
                except StoreError:
                    # Searches stay exact, so nothing is wrong but speed; try again later.
                    log.exception("building the index of model %s's collection", model_id)

    def stop(self) -> None:
        """Stop looking; call before closing the store (which cancels a running build)."""
        self._stopped.set()

    def join(self, timeout: float = 60.0) -> None:
        """Wait for the thread to end (after the store cancelled its build)."""
        if self._thread.is_alive():
            self._thread.join(timeout)
