"""Another process owning an embedded store, for the tests of what the owner's neighbours see."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# A child that opens the store, says so, and holds it until its stdin closes.
HOLD = """
import sys
from pathlib import Path
from ingest.store.edge import EdgeStore
store = EdgeStore(Path(sys.argv[1]))
print("holding", flush=True)
sys.stdin.read()
store.close()
"""


def start_holder(root: Path) -> subprocess.Popen[str]:
    """A child process that owns the embedded store at ``root`` once this returns."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    return holder


@contextlib.contextmanager
def held_elsewhere(root: Path) -> Iterator[int]:
    """The store at ``root`` owned by another process while the block runs; yields its pid."""
    holder = start_holder(root)
    try:
        yield holder.pid
    finally:
        holder.communicate(input="", timeout=60)
