"""`lookalike blobs put`: the printed URI names the file, where workers will look for it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ingest.images.blobs import BlobStore
from schemas.settings import ImageLimits
from tests.ingest.image_samples import picture
from tests.search_api.test_cli import invoke, lookalike_env


def test_put_prints_the_blob_uri_of_each_file_and_stores_it_where_workers_read(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.jpg", tmp_path / "b.png"
    picture().save(first, quality=90)
    picture(100, 80).save(second)
    env = lookalike_env(tmp_path / "data", tmp_path / "models")

    result = invoke(env, "blobs", "put", first, second)

    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    for line, path in zip(lines, (first, second), strict=True):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert line == f"blob://{digest}  {path}"
        stored = tmp_path / "data" / "blobs" / digest[:2] / digest[2:4] / digest
        assert stored.read_bytes() == path.read_bytes()  # the documented layout
        store = BlobStore(tmp_path / "data" / "blobs")
        assert store.get(f"blob://{digest}", ImageLimits()) == path.read_bytes()


def test_put_of_a_missing_file_or_an_empty_one_is_a_clear_error(tmp_path: Path) -> None:
    env = lookalike_env(tmp_path / "data", tmp_path / "models")
    missing = invoke(env, "blobs", "put", tmp_path / "nope.jpg")
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    (tmp_path / "empty.jpg").write_bytes(b"")
    empty = invoke(env, "blobs", "put", tmp_path / "empty.jpg")
    assert empty.exit_code == 1
    assert "refusing to store an empty blob" in empty.output
    assert "Traceback" not in empty.output
