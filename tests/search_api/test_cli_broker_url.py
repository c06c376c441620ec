"""`lookalike status --broker-url`: how a producer of your own finds the embedded Redis."""

from __future__ import annotations

from pathlib import Path

import redis

from search_api.cli.embedded.redis_server import EmbeddedRedis
from tests.search_api.test_cli import invoke, lookalike_env


def test_the_running_embedded_redis_url_is_printed_and_works(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data")
    server.start()
    try:
        result = invoke(
            lookalike_env(tmp_path / "data", tmp_path / "models"), "status", "--broker-url"
        )
        assert result.exit_code == 0, result.output
        url = result.output.strip()
        assert url == server.url
        assert redis.Redis.from_url(url).ping()  # password and port are the real ones
    finally:
        server.stop()


def test_without_a_running_embedded_redis_it_says_what_to_do(tmp_path: Path) -> None:
    result = invoke(lookalike_env(tmp_path / "data", tmp_path / "models"), "status", "--broker-url")
    assert result.exit_code == 1
    assert "no embedded Redis runs for" in result.output
    assert "lookalike up" in result.output


def test_a_configured_redis_url_is_printed_as_it_is(tmp_path: Path) -> None:
    env = lookalike_env(tmp_path / "data", tmp_path / "models")
    env["LOOKALIKE_REDIS_URL"] = "redis://:secret@queue.internal:6379/2"
    result = invoke(env, "status", "--broker-url")
    assert result.output.strip() == "redis://:secret@queue.internal:6379/2"


def test_status_needs_event_ids_or_the_flag(tmp_path: Path) -> None:
    result = invoke(lookalike_env(tmp_path / "data", tmp_path / "models"), "status")
    assert result.exit_code == 2
    assert "give one or more event ids, or --broker-url" in result.output
