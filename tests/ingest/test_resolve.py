"""Model resolution at start-up: installed file, checksum-pinned download, or a clear message."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from ingest.errors import ChecksumMismatch, ModelNotFound
from ingest.models.registry import KNOWN_MODELS, ModelRegistry, file_sha256
from ingest.models.resolve import resolve_model
from tests.http_support import ServerState, clear_proxies, serving
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID

PUBLISHED_ID = "dinov2-vits14"


class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def model_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local HTTP server publishing the test model's ONNX file as ``/model.onnx``."""
    clear_proxies(monkeypatch)
    published = tmp_path / "published"
    published.mkdir()
    shutil.copyfile(TEST_MODEL_DIR / "model.onnx", published / "model.onnx")
    handler = functools.partial(_QuietFileHandler, directory=str(published))
    with serving(handler, ServerState()) as state:
        yield state.url("/model.onnx")


def _publish(monkeypatch: pytest.MonkeyPatch, url: str, sha256: str | None) -> None:
    spec = KNOWN_MODELS[PUBLISHED_ID].model_copy(update={"onnx_url": url, "onnx_sha256": sha256})
    monkeypatch.setitem(KNOWN_MODELS, PUBLISHED_ID, spec)


def test_an_installed_model_is_used_as_is(registry: ModelRegistry) -> None:
    manifest = resolve_model(registry, TEST_MODEL_ID)
    assert manifest.spec.id == TEST_MODEL_ID
    assert manifest.random_weights


def test_a_published_model_with_a_known_checksum_is_fetched_and_installed(
    tmp_path: Path, model_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(monkeypatch, model_host, file_sha256(TEST_MODEL_DIR / "model.onnx"))
    registry = ModelRegistry(tmp_path / "models")
    manifest = resolve_model(registry, PUBLISHED_ID)
    assert manifest.sha256 == file_sha256(TEST_MODEL_DIR / "model.onnx")
    assert registry.manifest(PUBLISHED_ID) == manifest  # installed for the next start


def test_a_wrong_checksum_installs_nothing(
    tmp_path: Path, model_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(monkeypatch, model_host, "0" * 64)
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ChecksumMismatch):
        resolve_model(registry, PUBLISHED_ID)
    assert not registry.model_path(PUBLISHED_ID).exists()


def test_without_a_published_checksum_nothing_is_downloaded_and_the_message_says_how(
    tmp_path: Path, model_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(monkeypatch, model_host, None)
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ModelNotFound) as raised:
        resolve_model(registry, PUBLISHED_ID)
    message = str(raised.value)
    assert f"lookalike models fetch {PUBLISHED_ID} --sha256" in message
    assert f"lookalike models export {PUBLISHED_ID}" in message
    assert "LOOKALIKE_MODELS_DIR" in message
    assert not registry.model_path(PUBLISHED_ID).exists()


def test_an_unreachable_host_ends_in_the_same_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) on loopback: nothing listens there, the connection is refused.
    _publish(monkeypatch, "http://127.0.0.1:9/model.onnx", "a" * 64)
    with pytest.raises(ModelNotFound, match="could not download") as raised:
        resolve_model(ModelRegistry(tmp_path / "models"), PUBLISHED_ID)
    assert "lookalike models export" in str(raised.value)


def test_an_unknown_model_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="known models"):
        resolve_model(ModelRegistry(tmp_path / "models"), "no-such-model")
