"""`lookalike up` on a data dir of an earlier version moves its store over, once, and serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ingest.models.registry import ModelRegistry
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import local_client
from schemas.points import NewPoint
from tests.e2e.up_support import get_json
from tests.support import FIXTURES, TEST_MODEL_ID


def test_up_migrates_an_old_store_once_and_serves_it(start_up: Any, up_env: dict[str, str]) -> None:
    data_dir = Path(up_env["LOOKALIKE_DATA_DIR"])
    model = ModelRegistry(FIXTURES / "models").manifest(TEST_MODEL_ID)
    assert model is not None
    vectors = np.random.default_rng(5).normal(size=(40, model.spec.dimension))
    old = QdrantStore(local_client(str(data_dir / "qdrant")))
    old.upsert(
        model,
        [
            NewPoint(
                item_id=f"old-{i}",
                image_sha256=f"{i:064x}",
                vector=v.tolist(),
                source_uri=f"file:///old/{i}.jpg",
            )
            for i, v in enumerate(vectors)
        ],
    )
    old.close()

    first = start_up("--no-progress")
    url = first.wait_until_up()
    assert f"migrated lookalike__{TEST_MODEL_ID}: 40 points (counts match)" in first.output
    # The catalog was found, so no sample catalog was loaded over it.
    assert "loading the sample catalog" not in first.output
    assert get_json(f"{url}/api/v1/items/old-7")["item_id"] == "old-7"
    [info] = get_json(f"{url}/api/v1/collections")["collections"]
    assert (info["points"], info["index"]) == (40, "exact")
    assert first.stop() == 0, first.output

    second = start_up("--no-progress")
    second.wait_until_up()
    assert "migrated" not in second.output
    assert second.stop() == 0, second.output
    assert (data_dir / "qdrant.migrated").is_dir()
