"""Fixtures shared by every test package: the committed test model and isolated settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.models.registry import ModelRegistry
from schemas.models import ModelManifest
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models directory holding a copy of the committed random-weight test model."""
    target = tmp_path / "models"
    shutil.copytree(TEST_MODEL_DIR, target / TEST_MODEL_ID)
    return target


@pytest.fixture
def registry(models_dir: Path) -> ModelRegistry:
    """Registry over the temporary models directory."""
    return ModelRegistry(models_dir)


@pytest.fixture
def test_manifest(registry: ModelRegistry) -> ModelManifest:
    """Manifest of the test model."""
    return registry.manifest(TEST_MODEL_ID)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings isolated in tmp_path, defaulting to the test model; env vars cleared."""
    for name in list(os.environ):
        if name.startswith("LOOKALIKE_"):
            monkeypatch.delenv(name)
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        default_model=TEST_MODEL_ID,
        intra_op_threads=1,
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A real (embedded Valkey) Redis server private to the test, stopped afterwards."""
    server = EmbeddedRedis(tmp_path / "redis-data")
    server.start()
    yield server
    server.stop()
