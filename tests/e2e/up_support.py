"""Running `lookalike up` as a user does, for the end-to-end tests: process, HTTP helpers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from search_api.cli.embedded.redis_files import PID_FILE
from tests.support import FIXTURES, TEST_MODEL_ID

START_TIMEOUT = 180.0  # builds and ingests the sample catalog on a shared 2-core machine
STOP_TIMEOUT = 60.0
UP_LINE = re.compile(r"Lookalike is up on (http://127\.0\.0\.1:\d+)")
NEIGHBOUR_LINE = re.compile(r"^\s+(\d\.\d{3})\s+(\S+)$")


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class UpProcess:
    """A running `lookalike up` whose output is collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "search_api.cli", "up", "--bind", "127.0.0.1:0", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Started as a shell starts a background job (`make demo &`, a CI runner): with
            # SIGINT ignored. Ctrl-C must still stop it, so `up` installs its own handler.
            preexec_fn=ignore_sigint,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def wait_until_up(self) -> str:
        """The API's base URL once the stack says it is up."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := UP_LINE.search(line):
                    return match.group(1)
            if self.popen.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"`lookalike up` exited with {self.popen.returncode}:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"`lookalike up` not up after {START_TIMEOUT:.0f} s:\n{self.output}")

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM (as `docker stop` or systemd would) or SIGINT (Ctrl-C); the exit code."""
        self.popen.send_signal(signum)
        try:
            code = self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            pytest.fail(f"`lookalike up` did not stop within {STOP_TIMEOUT:.0f} s:\n{self.output}")
        self._reader.join(5)
        return code


@pytest.fixture
def up_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh machine's `lookalike up` on the committed test model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update(
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_MODELS_DIR=str(FIXTURES / "models"),
        LOOKALIKE_DEFAULT_MODEL=TEST_MODEL_ID,
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def start_up(up_env: dict[str, str]) -> Iterator[Any]:
    """Starts `lookalike up` processes; any still running at the end are killed."""
    started: list[UpProcess] = []

    def start(*args: str) -> UpProcess:
        process = UpProcess(up_env, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait(10)
    # A killed `up` cannot stop the Redis it started (a clean stop does): end it here.
    pid_file = Path(up_env["LOOKALIKE_DATA_DIR"]) / "redis" / PID_FILE
    if pid_file.is_file():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def upload(url: str, item_id: str, image: Path) -> str:
    """POST /api/v1/uploads as multipart; returns the event id."""
    boundary = "lookalike-e2e-boundary"
    parts = [
        (f'Content-Disposition: form-data; name="item_id"\r\n\r\n{item_id}').encode(),
        (
            b'Content-Disposition: form-data; name="metadata"\r\n\r\n'
            b'{"brand": "e2e", "product_id": "e2e-product"}'
        ),
        (
            f'Content-Disposition: form-data; name="images"; filename="{image.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image.read_bytes(),
    ]
    body = b"".join(f"--{boundary}\r\n".encode() + part + b"\r\n" for part in parts)
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/api/v1/uploads",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        accepted = json.load(response)
    event_id: str = accepted["events"][0]["event_id"]
    return event_id


def wait_done(url: str, event_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = get_json(f"{url}/api/v1/events/{event_id}")
        if state["status"] != "queued":
            return state
        time.sleep(0.2)
    pytest.fail(f"event {event_id} still queued after {timeout:.0f} s")


def similar_by_item(url: str, item_id: str, limit: int = 5) -> list[str]:
    found = post_json(f"{url}/api/v1/similar/item", {"item_id": item_id, "limit": limit})
    return [hit["item_id"] for hit in found["hits"]]
