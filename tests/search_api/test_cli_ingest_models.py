"""`lookalike ingest --queue --model X` refuses a model that is not enabled before anything is
stored or queued, in one line listing the enabled ones, as the API's 422 ``model_not_enabled``.

Real Redis (the test's own server), real store, the committed test model, CliRunner in process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import Result

from ingest.models.registry import ModelRegistry
from ingest.store.current import open_store
from schemas.queue import QUEUE
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from tests.ingest.catalog_samples import write_picture
from tests.search_api.test_cli import Env, invoke, lookalike_env
from tests.support import TEST_MODEL_ID

SECOND_MODEL = "second-tiny-random"


@pytest.fixture
def env(settings: Settings, redis_server: EmbeddedRedis) -> Env:
    """An isolated Lookalike on the test's Redis."""
    return {
        **lookalike_env(settings.data_dir, settings.models_dir),
        "LOOKALIKE_REDIS_URL": redis_server.url,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for index in range(2):
        write_picture(tmp_path / "photos" / f"p{index}.jpg", index)
    return tmp_path / "photos"


def _nothing_published(settings: Settings, redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.llen(QUEUE) == 0
        assert client.dbsize() == 0  # no event status, no pending record either
    finally:
        client.close()
    assert not settings.resolved_blob_dir().exists()  # no image copied for the workers


def _refused_in_one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""  # no note, no "queued ..." line
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


def test_queue_to_an_unknown_model_is_refused_listing_the_enabled_ones(
    env: Env, folder: Path, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    result = invoke(env, "ingest", folder, "--queue", "--model", "no-such-model", "--no-wait")

    line = _refused_in_one_line(result)
    assert line == (
        "Error: model 'no-such-model' (no such model) is not enabled; enabled: "
        f"{TEST_MODEL_ID} (LOOKALIKE_ENABLED_MODELS, else the current model)"
    )
    _nothing_published(settings, redis_server)


def test_queue_to_an_installed_model_that_is_not_enabled_is_refused(
    env: Env, folder: Path, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    registry = ModelRegistry(settings.models_dir)
    registry.register(registry.model_path(TEST_MODEL_ID), SECOND_MODEL)
    env["LOOKALIKE_ENABLED_MODELS"] = json.dumps([TEST_MODEL_ID])

    result = invoke(
        env,
        "ingest",
        folder,
        "--queue",
        "--model",
        TEST_MODEL_ID,
        "--model",
        SECOND_MODEL,
        "--no-wait",
    )

    line = _refused_in_one_line(result)
    assert f"model {SECOND_MODEL!r} is not enabled; enabled: {TEST_MODEL_ID} " in line
    _nothing_published(settings, redis_server)


def test_queue_to_an_enabled_model_is_published(
    env: Env, folder: Path, redis_server: EmbeddedRedis
) -> None:
    result = invoke(env, "ingest", folder, "--queue", "--model", TEST_MODEL_ID, "--no-wait")

    assert result.exit_code == 0, result.output
    assert "queued 2 upload events" in result.stdout
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.llen(QUEUE) == 2
    finally:
        client.close()


def test_after_a_reindex_the_current_model_is_the_enabled_one(
    env: Env, folder: Path, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    registry = ModelRegistry(settings.models_dir)
    registry.register(registry.model_path(TEST_MODEL_ID), SECOND_MODEL)
    store = open_store(settings)
    try:
        # What a finished reindex leaves: the alias on the new model's collection.
        store.ensure_collection(registry.manifest(SECOND_MODEL))
        store.set_current(SECOND_MODEL)
    finally:
        store.close()

    refused = invoke(env, "ingest", folder, "--queue", "--model", TEST_MODEL_ID, "--no-wait")
    line = _refused_in_one_line(refused)
    assert f"model {TEST_MODEL_ID!r} is not enabled; enabled: {SECOND_MODEL} " in line
    _nothing_published(settings, redis_server)

    accepted = invoke(env, "ingest", folder, "--queue", "--model", SECOND_MODEL, "--no-wait")
    assert accepted.exit_code == 0, accepted.output


def test_a_store_held_elsewhere_falls_back_to_the_settings_and_says_so(
    env: Env, folder: Path, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    held = open_store(settings)  # as `lookalike up` holds it
    try:
        refused = invoke(env, "ingest", folder, "--queue", "--model", SECOND_MODEL, "--no-wait")
        line = _refused_in_one_line(refused)
        assert f"enabled: {TEST_MODEL_ID} (" in line
        assert "the store cannot be read now (held by `lookalike up`?)" in line
        _nothing_published(settings, redis_server)

        accepted = invoke(env, "ingest", folder, "--queue", "--model", TEST_MODEL_ID, "--no-wait")
        assert accepted.exit_code == 0, accepted.output
    finally:
        held.close()
