"""`lookalike api`: gunicorn (or Flask's dev server) serving the app in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from schemas.settings import ApiRole, Settings
from search_api.cli import cli
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.web.server import check_workers, server_options
from tests.search_api.conftest import KEYS, free_port

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60


def test_local_store_refuses_several_workers(settings: Settings) -> None:
    with pytest.raises(ValueError, match="one process only"):
        check_workers(settings, 2)
    check_workers(settings, 1)
    check_workers(settings.model_copy(update={"qdrant_url": "http://qdrant:6333"}), 4)


def test_cli_refuses_several_workers_on_the_local_store(settings: Settings) -> None:
    env = {"LOOKALIKE_DATA_DIR": str(settings.data_dir)}
    result = CliRunner().invoke(cli, ["api", "--workers", "2"], env=env)

    assert result.exit_code == 2
    assert "one process only" in result.output
    assert "LOOKALIKE_QDRANT_URL" in result.output


def test_gunicorn_options() -> None:
    options = server_options("0.0.0.0:9000", 3, 8)

    assert options["bind"] == "0.0.0.0:9000"
    assert (options["workers"], options["worker_class"], options["threads"]) == (3, "gthread", 8)
    assert options["preload_app"] is False  # each worker opens its own store connection


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.fixture
def server_env(settings: Settings, redis_server: EmbeddedRedis) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    keys = [{"name": "ops", "key": KEYS[role], "roles": [role.value]} for role in KEYS]
    env.update(
        LOOKALIKE_DATA_DIR=str(settings.data_dir),
        LOOKALIKE_MODELS_DIR=str(settings.models_dir),
        LOOKALIKE_DEFAULT_MODEL=settings.default_model,
        LOOKALIKE_INTRA_OP_THREADS="1",
        LOOKALIKE_REDIS_URL=redis_server.url,
        LOOKALIKE_API__KEYS=json.dumps(keys),
    )
    return env


@pytest.fixture
def run_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Starts `python -m search_api.cli api ARGS` and stops it (its process group) afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> str:
        port = free_port()
        log_path = tmp_path / f"server-{len(started)}.log"
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "search_api.cli",
                    "api",
                    "--bind",
                    f"127.0.0.1:{port}",
                    *args,
                ],
                cwd=REPO,
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: gunicorn's worker goes with it
            )
        started.append(popen)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    return base
            except OSError:
                time.sleep(0.2)
        raise AssertionError(log_path.read_text())

    yield run
    for popen in started:
        os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()


@pytest.mark.parametrize("mode", [[], ["--dev"]], ids=["gunicorn", "dev"])
def test_server_answers_with_auth_and_readiness(run_server: Any, mode: list[str]) -> None:
    base = run_server(*mode)

    status, ready = _get(f"{base}/readyz")
    assert (status, ready["ready"], ready["auth"]) == (200, True, "api_keys")
    assert _get(f"{base}/api/v1/collections")[0] == 401
    status, body = _get(
        f"{base}/api/v1/collections", {"Authorization": f"Bearer {KEYS[ApiRole.SEARCH]}"}
    )
    assert (status, body["collections"]) == (200, [])


# --- bad settings: one line per variable, no traceback --------------------------------------


BAD_SETTINGS = {"LOOKALIKE_QUEUE__BATCH_SIZE": "abc", "LOOKALIKE_TTA_FLIP": "maybe"}


def _bad_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKALIKE_")}
    env.update(LOOKALIKE_DATA_DIR=str(tmp_path / "data"), **BAD_SETTINGS)
    return env


def _assert_one_line_per_variable(stderr: str) -> None:
    assert "Traceback" not in stderr
    named = [line for line in stderr.splitlines() if line.startswith("LOOKALIKE_")]
    assert sorted(line.split("=")[0] for line in named) == sorted(BAD_SETTINGS)
    assert any("expected true or false" in line for line in named)


@pytest.mark.parametrize("preload", [False, True], ids=["workers-load", "preload"])
def test_gunicorn_on_the_app_factory_stops_on_bad_settings(tmp_path: Path, preload: bool) -> None:
    # Status 3 is gunicorn's "worker failed to boot": the only one that stops its master
    # instead of restarting the worker forever.
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--control-socket",
            str(tmp_path / "gunicorn.ctl"),
            *(["--preload"] if preload else []),
            "search_api.web.app:create_app()",
        ],
        cwd=REPO,
        env=_bad_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    assert completed.returncode == 3, completed.stderr
    _assert_one_line_per_variable(completed.stderr)


def test_the_app_factory_outside_gunicorn_exits_2_on_bad_settings(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "from search_api.web.app import create_app; create_app()"],
        cwd=REPO,
        env=_bad_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    assert completed.returncode == 2, completed.stderr
    _assert_one_line_per_variable(completed.stderr)
    assert len(completed.stderr.strip().splitlines()) == len(BAD_SETTINGS)
