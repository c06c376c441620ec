"""A Celery worker started directly (`celery -A workers.app worker`) refuses bad settings at
start: one line per variable, exit status 2, before it connects to any broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BAD_SETTINGS = {
    "LOOKALIKE_QUEUE__BATCH_SIZE": "abc",
    "LOOKALIKE_API__KEYS": '{"name": "catalog"}',
}
REPO = Path(__file__).resolve().parents[2]


def test_celery_worker_stops_at_start_on_bad_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKALIKE_")}
    env.update(LOOKALIKE_DATA_DIR=str(tmp_path / "data"), **BAD_SETTINGS)

    # No broker is configured here: a worker that got past its start would wait for one
    # (and time out this test) instead of exiting.
    completed = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool", "solo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    named = [line for line in completed.stderr.splitlines() if line.startswith("LOOKALIKE_")]
    assert sorted(line.split(":")[0].split("=")[0] for line in named) == sorted(BAD_SETTINGS)
    assert any("expected a JSON list of objects" in line for line in named)
