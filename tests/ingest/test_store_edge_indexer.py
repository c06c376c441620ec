"""The embedded store builds its HNSW indexes by itself, once writes pause."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ingest.store.edge import EdgeStore
from ingest.store.edge_indexer import BackgroundIndexer
from schemas.settings import Settings
from tests.ingest.test_store_edge import MODEL_ID, catalog, manifest

DIM = 64


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_index_is_built_once_writes_pause(tmp_path: Path) -> None:
    model = manifest(dimension=DIM)
    store = EdgeStore(tmp_path / "edge", exact_below=500, indexing_threshold_kb=1)
    indexer = BackgroundIndexer(store, check_every=0.1, quiet_for=1.0)
    indexer.start()
    try:
        points = catalog(2000, dim=DIM)
        # A bulk load: batches keep coming, so nothing is built while it lasts.
        for start in range(0, len(points), 100):
            store.upsert(model, points[start : start + 100])
            time.sleep(0.05)
            assert store.index_state(MODEL_ID).state == "exact"
        assert _wait_for(lambda: store.index_state(MODEL_ID).state == "indexed", timeout=60)
        state = store.index_state(MODEL_ID)
        assert state.indexed_vectors >= 2000
        [info] = store.collections()
        assert (info.index, info.points) == ("indexed", 2000)
        [hit] = store.query(MODEL_ID, vector=points[7].vector, limit=1)
        assert hit.item_id == "item-00007"
        # Indexed: nothing left to do until another exact_below of vectors arrives.
        assert store.unindexed_models(quiet_for=0) == []
        store.upsert(model, catalog(100, dim=DIM, seed=8, start=50_000))
        assert store.unindexed_models(quiet_for=0) == []
    finally:
        indexer.stop()
        store.close()
        indexer.join()


def test_a_collection_too_small_to_index_is_not_tried_again(tmp_path: Path) -> None:
    # The engine's own threshold (the default 10 MB of vectors) is above these 600 vectors,
    # so a build finds nothing to do; the store remembers, instead of copying it every time.
    store = EdgeStore(tmp_path / "edge", exact_below=500)
    try:
        store.upsert(manifest(dimension=DIM), catalog(600, dim=DIM))
        assert store.unindexed_models(quiet_for=0) == [MODEL_ID]
        assert store.build_index(MODEL_ID) is False
        assert store.unindexed_models(quiet_for=0) == []
    finally:
        store.close()


def test_the_store_from_settings_indexes_in_the_background_and_stops_on_close(
    tmp_path: Path,
) -> None:
    before = {t.name for t in threading.enumerate()}
    assert "lookalike-indexer" not in before
    store = EdgeStore.from_settings(Settings(data_dir=tmp_path))
    assert "lookalike-indexer" in {t.name for t in threading.enumerate()}
    store.close()
    assert "lookalike-indexer" not in {t.name for t in threading.enumerate()}
