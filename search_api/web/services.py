"""What the API's views need (store, queue, blobs, thumbnails, models), opened lazily once."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

import redis
from flask import current_app

from ingest.images.blobs import BlobStore
from ingest.images.thumbnails import ThumbnailStore
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import ModelRuntime, load_runtime
from ingest.state.events import EventTracker
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from schemas.settings import Settings
from search_api.web.auth import KeyRing

if TYPE_CHECKING:
    from celery import Celery

    from ingest.state.duplicate_jobs import DuplicateResults
    from search_api.cli.embedded.redis_server import EmbeddedRedis
    from workers.publisher import Publisher

EXTENSION = "lookalike"
# A request must fail (503) quickly when Redis is gone, not hang a server thread.
REDIS_CONNECT_TIMEOUT = 2.0
REDIS_SOCKET_TIMEOUT = 5.0


class Services:
    """Settings plus the store, the publisher, blobs and thumbnails; pass any of them to inject."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore | None = None,
        publisher: Publisher | None = None,
        blobs: BlobStore | None = None,
        thumbnails: ThumbnailStore | None = None,
    ) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.api.keys)
        self.registry = ModelRegistry(settings.models_dir)
        self.blobs = blobs or BlobStore(settings.resolved_blob_dir())
        self.thumbnails = thumbnails or ThumbnailStore(settings.resolved_thumbnail_dir())
        self._store = store
        self._publisher = publisher
        # Injected objects belong to whoever injected them: close only what was opened here.
        self._owns_store = store is None
        self._owns_publisher = publisher is None
        self._celery: Celery | None = None
        self._embedded: EmbeddedRedis | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def store(self) -> VectorStore:
        """The vector store, opened on first use (local mode: this process holds its lock)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
        return self._store

    @property
    def publisher(self) -> Publisher:
        """Publisher and status tracker on the broker (an embedded Redis if none configured)."""
        if self._publisher is None:
            with self._lock:
                if self._publisher is None:
                    self._publisher = self._connect()
        return self._publisher

    @property
    def tracker(self) -> EventTracker:
        """Event statuses and dead letters."""
        return self.publisher.tracker

    @property
    def celery(self) -> Celery:
        """The Celery app tasks are sent with."""
        return self.publisher.celery

    @property
    def duplicates(self) -> DuplicateResults:
        """Duplicate jobs, their groups and dismissed pairs, on the same Redis."""
        from ingest.state.duplicate_jobs import DuplicateResults

        return DuplicateResults(self.tracker.client, prefix=self.settings.collection_prefix)

    def runtime(self, model_id: str) -> ModelRuntime:
        """A loaded model (cached process-wide by ``ingest``)."""
        return load_runtime(self.settings, model_id)

    def _connect(self) -> Publisher:
        from celery import Celery

        from search_api.cli.embedded.redis_server import redis_url_for
        from workers.app import configure
        from workers.publisher import Publisher

        url, self._embedded = redis_url_for(self.settings)
        # An app of our own: the shared `workers.app.app` is the worker's, configured there.
        self._celery = configure(Celery("lookalike-api", set_as_current=False), self.settings, url)
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            socket_timeout=REDIS_SOCKET_TIMEOUT,
        )
        return Publisher(self._celery, EventTracker(client, prefix=self.settings.collection_prefix))

    def close(self) -> None:
        """Release the store (its file lock in local mode), Redis connections, embedded Redis."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._store is not None and self._owns_store:
                with contextlib.suppress(Exception):
                    self._store.close()
            if self._publisher is not None and self._owns_publisher:
                with contextlib.suppress(Exception):
                    self._publisher.tracker.client.close()
            if self._celery is not None:
                with contextlib.suppress(Exception):
                    self._celery.close()
            if self._embedded is not None:
                self._embedded.stop()


def current_services() -> Services:
    """The services of the app handling the current request."""
    services = current_app.extensions[EXTENSION]
    assert isinstance(services, Services)  # noqa: S101 (set by create_app)
    return services
