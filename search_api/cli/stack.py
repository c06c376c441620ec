"""Where the web app, the workers and the embedded services meet: the one place that wires them.

`lookalike up` runs the whole embedded stack in one process: Redis (embedded unless
``LOOKALIKE_REDIS_URL``), the store (Qdrant's engine on local disk unless
``LOOKALIKE_QDRANT_URL``), a Celery worker thread and the HTTP API with the admin page. The
embedded store is owned by one process, so the API and the worker share it here; production
runs them as separate processes against servers (deploy/).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import redis
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from ingest.errors import ModelNotFound
from ingest.images.blobs import BlobStore
from ingest.ingestion.bulk import catalog_sources, upload_events
from ingest.models.registry import ModelRegistry
from ingest.models.resolve import resolve_model
from ingest.state.events import EventTracker
from ingest.store.base import VectorStore
from ingest.store.current import check_store_free, current_model_id
from schemas.models import ModelManifest
from schemas.queue import QUEUE
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.cli.migrate import open_store_migrating
from search_api.cli.progress import follow
from search_api.producer.celery_client import producer_celery
from search_api.producer.publisher import Publisher
from search_api.web.app import create_app
from search_api.web.server import check_workers, serve
from search_api.web.services import Services
from workers.app import app as worker_app
from workers.app import configure
from workers.context import provide_store
from workers.embedded_worker import EmbeddedWorker
from workers.recovery import restore_orphans, start_recovery

log = logging.getLogger(__name__)

SAMPLE_DIR_NAME = "sample-catalog"
# The near-duplicate shown on start: the sample catalog's coffee photo and its variants.
SHOWCASE_ITEM = "coffee"


def redis_url_for(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The configured broker URL, or a started embedded server's URL and the server to stop."""
    if settings.redis_url:
        return settings.redis_url, None
    server = EmbeddedRedis(settings.data_dir)
    return server.start(), server


def running_broker_url(settings: Settings) -> str | None:
    """LOOKALIKE_REDIS_URL, else the running embedded Redis's URL; None if neither (no start)."""
    return settings.redis_url or EmbeddedRedis(settings.data_dir).running_url()


@contextlib.contextmanager
def broker_url(settings: Settings) -> Iterator[str]:
    """LOOKALIKE_REDIS_URL, or an embedded Redis's URL for the duration of the block."""
    url, embedded = redis_url_for(settings)
    try:
        yield url
    finally:
        if embedded is not None:
            # Shuts the server down only if this process started it; the append-only file
            # keeps whatever is still queued for the next start.
            embedded.stop()


@contextlib.contextmanager
def queue_connection(settings: Settings) -> Iterator[Publisher]:
    """A publisher, with its status tracker, on the queue's Redis (embedded if none is set)."""
    with broker_url(settings) as url:
        celery = producer_celery(settings, url)
        publisher = Publisher.connect(celery, settings.collection_prefix)
        try:
            yield publisher
        finally:
            publisher.tracker.client.close()
            celery.close()


def run_worker(settings: Settings, concurrency: int | None, loglevel: str) -> None:
    """Start a Celery worker on the ingestion queue (blocks until stopped)."""
    if settings.qdrant_url is None and (concurrency or 1) > 1:
        raise click.UsageError(
            "the embedded store can be opened by one process only: run a Qdrant server and "
            "set LOOKALIKE_QDRANT_URL to use --concurrency > 1"
        )
    check_store_free(settings)
    processes = concurrency or (settings.worker_processes if settings.qdrant_url else 1)
    # Worker processes read their settings from the environment: share the thread rule
    # (ONNX threads per session x processes <= cores) with them.
    os.environ["LOOKALIKE_WORKER_PROCESSES"] = str(processes)

    with broker_url(settings) as url:
        celery = configure(worker_app, settings, url)
        tracker = EventTracker(redis.Redis.from_url(url), prefix=settings.collection_prefix)
        stop_recovery = start_recovery(
            celery,
            tracker,
            interval=settings.queue.recovery_interval,
            min_age=settings.queue.recovery_min_age,
        )
        try:
            celery.worker_main(
                [
                    "worker",
                    f"--loglevel={loglevel}",
                    f"--concurrency={processes}",
                    f"--queues={QUEUE}",
                    "--hostname=lookalike@%h",
                    "--without-gossip",
                    "--without-mingle",
                ]
            )
        finally:
            stop_recovery.set()
            tracker.client.close()


def serve_api(settings: Settings, *, bind: str, workers: int, threads: int, dev: bool) -> None:
    """The HTTP API until stopped: gunicorn, or Flask's server with ``dev``.

    Without LOOKALIKE_REDIS_URL the embedded Redis is started here, before gunicorn forks,
    and its URL handed to every worker process (the web app never starts a broker).
    """
    check_workers(settings, workers)
    check_store_free(settings)
    with broker_url(settings) as url:
        settings = settings.model_copy(update={"redis_url": url})
        if not dev:
            serve(settings, bind=bind, workers=workers, threads=threads)
            return
        host, _, port = bind.rpartition(":")
        create_app(settings).run(host=host or "127.0.0.1", port=int(port), threaded=True)


@dataclass
class EmbeddedStack:
    """Everything `lookalike up` starts, in start order; ``close`` stops it in reverse."""

    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8000
    _closers: list[Callable[[], None]] = field(default_factory=list)
    services: Services | None = None
    server: BaseWSGIServer | None = None
    manifest: ModelManifest | None = None
    worker: EmbeddedWorker | None = None
    # Run on this installed model when the configured one cannot be had (`make demo` on a
    # machine without a package index), saying why in one line.
    fallback_model: str | None = None
    progress: bool = True

    @property
    def url(self) -> str:
        """Base URL of the running API (the port is known once the server is bound)."""
        port = self.server.server_port if self.server is not None else self.port
        return f"http://{self.host}:{port}"

    def start(self) -> None:
        """Start Redis, the store, the worker and the HTTP server; the model must resolve first."""
        # Before anything starts: a taken port is a message, not a half-started stack.
        self._check_address()
        # A store of an earlier version's format is moved over here, once, before anything.
        store = open_store_migrating(self.settings, progress=self.progress)
        self._closers.append(store.close)
        # The alias's model after a reindex, else the configured one; it must resolve before
        # a worker or the API starts (a missing model stops here, with how to get it).
        self.manifest = self._resolve(current_model_id(self.settings, store))
        url, embedded = redis_url_for(self.settings)
        if embedded is not None:
            self._closers.append(embedded.stop)
        # Everything below talks to this one broker, embedded or configured.
        self.settings = self.settings.model_copy(update={"redis_url": url})
        celery = configure(worker_app, self.settings, url)
        provide_store(self.settings, store)
        publisher = Publisher.connect(celery, self.settings.collection_prefix)
        self._closers.append(publisher.tracker.client.close)
        if embedded is not None:
            # Our own Redis has no other consumer: what it shows as held is orphaned.
            restore_orphans(celery, publisher.tracker)
        self.worker = EmbeddedWorker(celery)
        self.worker.start()
        self._closers.append(self.worker.stop)
        stop_recovery = start_recovery(
            celery,
            publisher.tracker,
            interval=self.settings.queue.recovery_interval,
            min_age=self.settings.queue.recovery_min_age,
        )
        self._closers.append(stop_recovery.set)
        self.services = Services(self.settings, store=store, publisher=publisher)
        self._closers.append(self.services.close)
        self._serve(create_app(services=self.services))

    def _resolve(self, model_id: str) -> ModelManifest:
        registry = ModelRegistry(self.settings.models_dir)
        try:
            return resolve_model(registry, model_id)
        except ModelNotFound as error:
            if self.fallback_model is None or self.fallback_model == model_id:
                raise
            reason = str(error).splitlines()[0]
            click.secho(f"{reason}; running on {self.fallback_model!r} instead", err=True)
            manifest = resolve_model(registry, self.fallback_model)
            # Queries and uploads default to the model the stack runs on.
            self.settings = self.settings.model_copy(update={"default_model": manifest.spec.id})
            return manifest

    def _check_address(self) -> None:
        try:
            with socket.create_server((self.host, self.port)):
                pass
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {self.host}:{self.port} "
                f"({os.strerror(error.errno) if error.errno else error}); "
                "choose another address with --bind HOST:PORT"
            ) from error

    def _serve(self, app: Flask) -> None:
        # Werkzeug exits the process itself when the address is taken; checked before start.
        self.server = make_server(self.host, self.port, app, threaded=True)
        server = self.server
        thread = threading.Thread(target=server.serve_forever, name="lookalike-http", daemon=True)
        thread.start()
        self._closers.append(server.shutdown)

    def close(self) -> None:
        """Stop the HTTP server, then the worker (warm), then the store and Redis."""
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # keep stopping the rest; the data is on disk either way
                log.exception("while stopping %s", getattr(closer, "__qualname__", closer))

    def worker_alive(self) -> bool:
        """Whether the worker thread still consumes the queue."""
        return self.worker is not None and self.worker.alive

    @property
    def store(self) -> VectorStore:
        """The store the API and the worker share."""
        assert self.services is not None  # noqa: S101 (only used after start)
        return self.services.store


@contextlib.contextmanager
def running_stack(
    settings: Settings,
    host: str,
    port: int,
    *,
    fallback_model: str | None = None,
    progress: bool = True,
) -> Iterator[EmbeddedStack]:
    """A started stack, stopped cleanly however the block ends (Ctrl-C included)."""
    stack = EmbeddedStack(
        settings, host=host, port=port, fallback_model=fallback_model, progress=progress
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


def stored_points(stack: EmbeddedStack, model_id: str) -> int:
    """Points in a model's collection (0 when it does not exist yet)."""
    return next((c.points for c in stack.store.collections() if c.model_id == model_id), 0)


def load_sample_catalog(stack: EmbeddedStack, *, progress: bool) -> int:
    """Build the sample catalog under the data dir, queue it, follow the worker; returns count."""
    from ingest.ingestion.samples import build_sample_catalog

    services = stack.services
    assert services is not None  # noqa: S101 (only used after start)
    target = stack.settings.data_dir / SAMPLE_DIR_NAME
    csv_path = target / "items.csv"
    if not csv_path.is_file():
        build_sample_catalog(target)
    sources = catalog_sources(csv_path, target / "images")
    # Through the queue like any upload: the bytes go to the blob store, events to Redis.
    events, failures = upload_events(
        sources, BlobStore(stack.settings.resolved_blob_dir()), stack.settings.images
    )
    for failure in failures:
        click.echo(f"  skipped {failure.item_id}: [{failure.reason}] {failure.message}")
    event_ids = services.publisher.publish(events)
    click.echo(f"loading the sample catalog ({len(event_ids)} images from {target})")
    follow(services.tracker, event_ids, progress=progress)
    return len(event_ids)


def sample_queries(data_dir: Path) -> Path:
    """Held-out query images of the sample catalog (not in the catalog themselves)."""
    return data_dir / SAMPLE_DIR_NAME / "queries"
