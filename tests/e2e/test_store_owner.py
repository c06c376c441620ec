"""While `lookalike up` owns the embedded store, every other command that would open it says
so in one line naming the owner, instead of a lock traceback or a half-started process.
(`lookalike reindex` needs no store of its own: it queues its job for the running stack.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

COMMANDS = {
    "search": ["search", "--item", "rocket"],
    "collections": ["collections"],
    "ingest": ["ingest", "{photos}"],
    "up": ["up", "--bind", "127.0.0.1:0", "--no-progress"],
    "api": ["api", "--bind", "127.0.0.1:0"],
    "worker": ["worker"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_commands_name_the_process_that_owns_the_store(
    start_up: Any, up_env: dict[str, str], command: str
) -> None:
    running = start_up("--no-progress")
    running.wait_until_up()
    photos = Path(up_env["LOOKALIKE_DATA_DIR"]) / "sample-catalog" / "images"
    args = [a.format(photos=photos) for a in COMMANDS[command]]
    finished = subprocess.run(
        [sys.executable, "-m", "search_api.cli", *args],
        env=up_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = (finished.stdout + finished.stderr).strip()
    assert finished.returncode != 0, said
    assert "Traceback" not in said
    assert f"process {running.popen.pid}" in said, said
    assert "one process owns it" in said
    # The running stack is untouched.
    assert running.popen.poll() is None
    assert running.stop() == 0, running.output
