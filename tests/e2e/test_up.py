"""`lookalike up` as a user runs it: a subprocess with its own Redis, store, worker and API."""

from __future__ import annotations

import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.up_support import (
    NEIGHBOUR_LINE,
    get_json,
    similar_by_item,
    upload,
    wait_done,
)


def test_up_serves_the_sample_catalog_ingests_an_upload_and_keeps_data_across_restarts(
    start_up: Any, up_env: dict[str, str]
) -> None:
    first = start_up("--no-progress")
    url = first.wait_until_up()
    output = first.output
    assert "RANDOM WEIGHTS" in output  # the test model says so, loudly
    assert f"{url}/admin" in output
    # The showcase search on start: coffee's synthetic near-duplicates come first.
    shown = [m.group(2) for line in first.lines if (m := NEIGHBOUR_LINE.match(line))]
    assert set(shown[:4]) == {"coffee-crop", "coffee-small", "coffee-jpeg40", "coffee-flip"}

    # Over HTTP: neighbours of a near-duplicated product, the admin page with its warning.
    assert set(similar_by_item(url, "chelsea")[:4]) == {
        "chelsea-crop",
        "chelsea-small",
        "chelsea-jpeg40",
        "chelsea-flip",
    }
    with urllib.request.urlopen(f"{url}/admin", timeout=30) as response:
        assert "random weights" in response.read().decode().lower()

    # An upload goes through the queue to the in-process worker and becomes searchable.
    query = Path(up_env["LOOKALIKE_DATA_DIR"]) / "sample-catalog" / "queries" / "rocket-query.jpg"
    state = wait_done(url, upload(url, "uploaded-rocket", query))
    assert state["status"] == "done", state
    assert "uploaded-rocket" in similar_by_item(url, "rocket", limit=10)

    assert first.stop() == 0, first.output
    assert "stopped; the data is kept" in first.output

    # The next `up` finds the data: no second sample load, the upload still there.
    second = start_up("--no-progress")
    url = second.wait_until_up()
    assert "loading the sample catalog" not in second.output
    item = get_json(f"{url}/api/v1/items/uploaded-rocket")
    assert item["item_id"] == "uploaded-rocket"
    assert second.stop(signal.SIGINT) == 0, second.output
    assert "stopped; the data is kept" in second.output


def test_up_without_the_model_says_how_to_get_it(
    start_up: Any, up_env: dict[str, str], tmp_path: Path
) -> None:
    up_env["LOOKALIKE_MODELS_DIR"] = str(tmp_path / "no-models")
    up_env["LOOKALIKE_DEFAULT_MODEL"] = "dinov2-vits14"
    process = start_up()
    code = process.popen.wait(60)
    process._reader.join(5)
    assert code == 1, process.output
    assert "lookalike models fetch dinov2-vits14 --sha256" in process.output
    assert "Lookalike is up" not in process.output


def test_up_on_a_taken_port_says_so_before_starting_anything(
    start_up: Any, up_env: dict[str, str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = start_up("--bind", f"127.0.0.1:{port}")
        code = process.popen.wait(60)
    process._reader.join(5)
    assert code == 1, process.output
    assert "choose another address with --bind" in process.output
    assert "embedded Redis" not in process.output  # nothing was started
