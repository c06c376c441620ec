"""An unclean stop loses nothing: `lookalike up` killed with uploads in hand, then restarted.

Real processes throughout: the stack is SIGKILLed while its in-process worker holds accepted
uploads (delivered, not yet acknowledged: they sit in kombu's unacknowledged hash), the
embedded Redis outlives it as it would on a user's machine, and the next `up` must make every
accepted upload searchable within 60 s instead of after the visibility timeout.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import redis

from search_api.cli.embedded.redis_files import STATE_FILE, ServerState
from tests.e2e.up_support import get_json, upload
from tests.ingest.image_samples import picture
from workers.recovery import UNACKED_KEY

UPLOADS = 20
SEARCHABLE_WITHIN = 60.0


def _embedded_redis(data_dir: Path) -> redis.Redis:
    """A client of the stack's own Redis (its port and password are in its state file)."""
    state = ServerState(**json.loads((data_dir / "redis" / STATE_FILE).read_text()))
    return redis.Redis.from_url(state.url)


def _distinct_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for n in range(count):
        path = folder / f"{n}.jpg"
        picture(200 + 8 * n, 160).save(path, quality=90)  # another size: another image
        paths.append(path)
    return paths


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)


def test_uploads_held_by_a_killed_stack_are_searchable_soon_after_the_restart(
    start_up: Any, up_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = Path(up_env["LOOKALIKE_DATA_DIR"])
    images = _distinct_images(tmp_path / "images", UPLOADS)
    # The worker waits for a batch that never fills, so it holds every upload unacknowledged.
    up_env.update(LOOKALIKE_QUEUE__BATCH_SIZE="100", LOOKALIKE_QUEUE__FLUSH_INTERVAL="600")
    first = start_up("--no-sample", "--no-progress")
    url = first.wait_until_up()
    accepted = [upload(url, f"crash-{n}", image) for n, image in enumerate(images)]
    held = _embedded_redis(data_dir)
    _wait_for(lambda: held.hlen(UNACKED_KEY) == UPLOADS, 30, "the worker holds every upload")
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(10)
    assert held.hlen(UNACKED_KEY) == UPLOADS  # still hidden: only a restart can bring them back

    up_env.update(LOOKALIKE_QUEUE__BATCH_SIZE="16", LOOKALIKE_QUEUE__FLUSH_INTERVAL="1")
    second = start_up("--no-sample", "--no-progress")
    url = second.wait_until_up()
    restarted = time.monotonic()

    def all_done() -> bool:
        states = [get_json(f"{url}/api/v1/events/{event_id}") for event_id in accepted]
        return all(state["status"] == "done" for state in states)

    _wait_for(all_done, SEARCHABLE_WITHIN, "every accepted upload is done")
    searchable_after = time.monotonic() - restarted
    for n in range(UPLOADS):
        item = get_json(f"{url}/api/v1/items/crash-{n}")
        assert len(item["points"]) == 1, item  # stored once, not twice
    # Acknowledged just after the batch is stored: nothing is left to come back later.
    _wait_for(lambda: held.hlen(UNACKED_KEY) == 0, 10, "every message acknowledged")
    print(
        f"{UPLOADS} accepted and stored once, all done {searchable_after:.1f} s after the restart"
    )
    assert second.stop() == 0, second.output
