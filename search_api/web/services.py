"""What the API's views need (store, queue, blobs, thumbnails, models), opened lazily once.

The web app never starts a broker: without ``LOOKALIKE_REDIS_URL`` whoever runs it
(``lookalike up``, ``lookalike api``: ``search_api.cli.stack``) starts the embedded Redis and
passes its URL in the settings; an app with no Redis at all answers queue requests with 503.
"""

from __future__ import annotations

import contextlib
import threading

import redis
from celery import Celery
from flask import current_app

from ingest.errors import QueueUnavailable
from ingest.images.blobs import BlobStore
from ingest.images.thumbnails import ThumbnailStore
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import ModelRuntime, load_runtime
from ingest.state.batches import Batches
from ingest.state.duplicate_jobs import DuplicateResults
from ingest.state.events import EventTracker
from ingest.state.reindex_jobs import ReindexJobs
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from schemas.settings import Settings
from search_api.producer.celery_client import producer_celery
from search_api.producer.publisher import Publisher
from search_api.web.auth import KeyRing

EXTENSION = "lookalike"
# A request must fail (503) quickly when Redis is gone, not hang a server thread.
REDIS_CONNECT_TIMEOUT = 2.0
REDIS_SOCKET_TIMEOUT = 5.0


class Services:
    """Settings plus the store, the queue, blobs and thumbnails; pass any of them to inject."""

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
        self._lock = threading.Lock()
        self._closed = False

    @property
    def store(self) -> VectorStore:
        """The vector store, opened on first use (the embedded store: this process owns it)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
        return self._store

    @property
    def publisher(self) -> Publisher:
        """Publisher and status tracker on the configured Redis."""
        if self._publisher is None:
            with self._lock:
                if self._publisher is None:
                    self._publisher = self._connect()
        return self._publisher

    @property
    def redis(self) -> redis.Redis:
        """The queue's Redis, where every state store of ``ingest.state`` lives."""
        return self.publisher.tracker.client

    @property
    def tracker(self) -> EventTracker:
        """Event statuses, the pending ledger and dead letters."""
        return self.publisher.tracker

    @property
    def celery(self) -> Celery:
        """The Celery app tasks are sent with."""
        return self.publisher.celery

    @property
    def duplicates(self) -> DuplicateResults:
        """Duplicate jobs, their groups and dismissed pairs."""
        return DuplicateResults(self.redis, prefix=self.settings.collection_prefix)

    @property
    def reindex_jobs(self) -> ReindexJobs:
        """Re-index jobs and their progress."""
        return ReindexJobs(self.redis, prefix=self.settings.collection_prefix)

    @property
    def batches(self) -> Batches:
        """The admin page's upload batches."""
        return Batches(self.redis, self.settings.collection_prefix)

    def runtime(self, model_id: str) -> ModelRuntime:
        """A loaded model (cached process-wide by ``ingest``)."""
        return load_runtime(self.settings, model_id)

    def _connect(self) -> Publisher:
        url = self.settings.redis_url
        if url is None:
            raise QueueUnavailable(
                "no Redis configured for this app (LOOKALIKE_REDIS_URL); `lookalike api` and "
                "`lookalike up` start an embedded one when it is unset"
            )
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            socket_timeout=REDIS_SOCKET_TIMEOUT,
        )
        celery = producer_celery(self.settings, url, name="lookalike-api")
        return Publisher(celery, EventTracker(client, prefix=self.settings.collection_prefix))

    def close(self) -> None:
        """Release the store (the embedded one: its ownership) and the Redis connections."""
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
                with contextlib.suppress(Exception):
                    self._publisher.celery.close()


def current_services() -> Services:
    """The services of the app handling the current request."""
    services = current_app.extensions[EXTENSION]
    assert isinstance(services, Services)  # noqa: S101 (set by create_app)
    return services
