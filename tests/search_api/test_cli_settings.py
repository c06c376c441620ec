"""Bad LOOKALIKE_* settings: every `lookalike` command says which variable, once, and exits 2.

Real processes (the installed console script), as a user or a container would start them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Two bad variables: a value of the wrong type and a list of keys of the wrong shape.
BAD_SETTINGS = {
    "LOOKALIKE_QUEUE__BATCH_SIZE": "abc",
    "LOOKALIKE_API__KEYS": '[{"name": "catalog", "key": "too-short", "roles": ["search"]}]',
}


def bad_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment with no LOOKALIKE_* of its own, plus the bad settings."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKALIKE_")}
    env.update(LOOKALIKE_DATA_DIR=str(tmp_path / "data"), **BAD_SETTINGS)
    return env


def assert_one_line_per_variable(completed: subprocess.CompletedProcess[str]) -> None:
    """Exit status 2, and exactly one line on stderr per bad variable, starting with its name."""
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "pydantic" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert sorted(line.split(":")[0].split("=")[0] for line in lines) == sorted(BAD_SETTINGS)
    (batch,) = (line for line in lines if line.startswith("LOOKALIKE_QUEUE__BATCH_SIZE"))
    assert "expected a whole number > 0" in batch
    (keys,) = (line for line in lines if line.startswith("LOOKALIKE_API__KEYS"))
    assert "at least 16 characters" in keys
    assert "too-short" not in keys  # a secret is never echoed


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["ingest", "{folder}", "--no-progress"],
        ["search", "--item", "sku-1"],
        ["status"],
        ["worker"],
        ["api"],
        ["up"],
        ["reindex", "--to", "dinov2-vits14"],
        ["evaluate", "{folder}"],
        ["sample-catalog", "{folder}/sample"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_names_each_bad_variable_and_exits_2(
    command: list[str], tmp_path: Path
) -> None:
    script = shutil.which("lookalike") or str(Path(sys.executable).parent / "lookalike")
    args = [part.format(folder=tmp_path) for part in command]

    completed = subprocess.run(
        [script, *args],
        env=bad_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert_one_line_per_variable(completed)
    assert completed.stdout == ""
