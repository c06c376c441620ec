"""Fixtures of the API tests: the real app on a real local-mode store, real Redis, real model."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from ingest.duplicates.jobs import run_duplicate_job
from ingest.images.sources import SourceResolver
from ingest.ingestion.bulk import BulkIngestor, catalog_sources
from ingest.ingestion.handler import EventHandler, EventResult, Outcome
from ingest.models.runtime import load_runtime
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from schemas.events import DeadLetter, DeleteEvent, EventStatus, UpdatePayloadEvent, UploadEvent
from schemas.queue import DELETE_TASK, FIND_DUPLICATES_TASK, INGEST_TASK, QUEUE, UPDATE_PAYLOAD_TASK
from schemas.settings import ApiKey, ApiRole, ApiSettings, Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.web.app import create_app
from search_api.web.services import Services
from tests.ingest.catalog_samples import CATALOG_SIZE, catalog_row, distinct_picture, write_catalog

KEYS = {
    ApiRole.SEARCH: "search-key-0123456789",
    ApiRole.INGEST: "ingest-key-0123456789",
    ApiRole.ADMIN: "admin-key-0123456789abc",
}


def auth(role: ApiRole) -> dict[str, str]:
    """The Authorization header of the test key holding ``role``."""
    return {"Authorization": f"Bearer {KEYS[role]}"}


def jpeg(index: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A distinct small JPEG."""
    buffer = io.BytesIO()
    distinct_picture(index, size).save(buffer, format="JPEG")
    return buffer.getvalue()


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The error of a response, checked against the one body shape."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def free_port() -> int:
    """A TCP port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def admin_client(app: Flask) -> FlaskClient:
    """A test client of ``app`` sending the admin key."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {KEYS[ApiRole.ADMIN]}"
    return client


@contextlib.contextmanager
def closing_app(services: Services) -> Iterator[Flask]:
    """An app on the given services, which are closed afterwards."""
    app = create_app(services=services)
    app.config["TESTING"] = True
    try:
        yield app
    finally:
        services.close()


@pytest.fixture
def api_settings(settings: Settings, redis_server: EmbeddedRedis) -> Settings:
    """Test settings on the test Redis, with one key per role."""
    keys = [ApiKey(name=role.value, key=key, roles=[role]) for role, key in KEYS.items()]
    return settings.model_copy(
        update={"redis_url": redis_server.url, "api": ApiSettings(keys=keys)}
    )


@pytest.fixture
def store(api_settings: Settings) -> Iterator[VectorStore]:
    """The local-mode store on disk; the test process holds it (as the API process would)."""
    store = open_store(api_settings)
    yield store
    store.close()


@dataclass(frozen=True)
class Catalog:
    """The standard test catalog, ingested: its images folder."""

    images: Path

    def image(self, index: int) -> bytes:
        """Bytes of catalog row ``index``'s image."""
        return (self.images / catalog_row(index)["image"]).read_bytes()


@pytest.fixture
def catalog(api_settings: Settings, store: VectorStore, tmp_path: Path) -> Catalog:
    """The 12-item test catalog embedded with the test model and stored."""
    csv_path, images = write_catalog(tmp_path / "catalog")
    runtime = load_runtime(api_settings, api_settings.default_model)
    summary = BulkIngestor(store, [runtime], api_settings.images).run(
        catalog_sources(csv_path, images), progress=False
    )
    assert (summary.ingested, summary.failed) == (CATALOG_SIZE, 0)
    return Catalog(images)


@pytest.fixture
def services(api_settings: Settings, store: VectorStore) -> Iterator[Services]:
    """The app's services with the test's store injected (Redis opened lazily)."""
    services = Services(api_settings, store=store)
    yield services
    services.close()


@pytest.fixture
def app(services: Services) -> Flask:
    """The API app."""
    app = create_app(services=services)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client sending the admin key."""
    return admin_client(app)


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """A test client sending no key."""
    return app.test_client()


class InProcessWorker:
    """Takes the queued Celery messages off Redis and applies them like the worker tasks do."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        self.tracker = services.tracker
        self.duplicates = services.duplicates
        self.client: redis.Redis = services.tracker.client
        self.handler = EventHandler(
            settings,
            services.store,
            SourceResolver(settings, blobs=services.blobs),
            functools.partial(load_runtime, settings),
        )

    def _take(self) -> tuple[str, list[Any]] | None:
        raw = self.client.rpop(QUEUE)  # kombu LPUSHes, workers take from the other end
        if raw is None:
            return None
        assert isinstance(raw, bytes | str)
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        args, _kwargs, _embed = body
        return message["headers"]["task"], args

    def run(self) -> list[EventResult]:
        """Apply every queued message; returns the outcomes in queue order."""
        results = []
        while (taken := self._take()) is not None:
            task, args = taken
            if task == FIND_DUPLICATES_TASK:
                self._find_duplicates(*args)
                continue
            result = self._apply(task, args[0])
            self._record(task, args[0], result)
            results.append(result)
        return results

    def _find_duplicates(
        self, model_id: str, threshold: float, transitive: bool, job_id: str
    ) -> None:
        run_duplicate_job(
            self.handler.store,
            self.duplicates,
            job_id,
            model_id=model_id,
            threshold=threshold,
            transitive=transitive,
        )

    def _apply(self, task: str, event: dict[str, Any]) -> EventResult:
        apply: dict[str, Callable[[dict[str, Any]], EventResult]] = {
            INGEST_TASK: lambda e: self.handler.uploads([UploadEvent.model_validate(e)])[0],
            DELETE_TASK: lambda e: self.handler.delete(DeleteEvent.model_validate(e)),
            UPDATE_PAYLOAD_TASK: lambda e: self.handler.update_payload(
                UpdatePayloadEvent.model_validate(e)
            ),
        }
        return apply[task](event)

    def _record(self, task: str, event: dict[str, Any], result: EventResult) -> None:
        if result.outcome is Outcome.DONE:
            self.tracker.mark(result.event_id, EventStatus.DONE, item_id=result.item_id)
            return
        assert result.outcome is Outcome.FAILED, result
        self.tracker.mark(
            result.event_id,
            EventStatus.FAILED,
            item_id=result.item_id,
            reason=result.reason,
            message=result.message,
        )
        letter = DeadLetter(
            event=event, task=task, reason=result.reason or "", message=result.message or ""
        )
        self.tracker.add_dead_letter(letter, result.event_id)


@pytest.fixture
def worker(services: Services) -> InProcessWorker:
    """Simulates a worker in this process (local mode: only this process may open the store)."""
    return InProcessWorker(services)
