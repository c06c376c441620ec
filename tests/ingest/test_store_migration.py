"""A store written by earlier versions (qdrant-client's local mode in <data_dir>/qdrant) moves
into the embedded store once, point for point, or stays where it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.errors import StoreError, StoreUnavailable
from ingest.store import current
from ingest.store.base import VectorStore, scroll_pages
from ingest.store.edge import EdgeStore
from ingest.store.migration import MIGRATED_FOLDER
from ingest.store.qdrant import QdrantStore
from ingest.store.qdrant_local import local_client
from schemas.settings import Settings
from tests.ingest.test_store_edge import catalog, manifest


def everything(store: VectorStore, model_id: str) -> dict[str, tuple[list[float], Any]]:
    return {
        p.id: (p.vector or [], p.payload)
        for page in scroll_pages(store, model_id, page_size=500, with_vectors=True)
        for p in page
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A data dir holding an old-format store: two collections, the alias on the second."""
    old = QdrantStore(local_client(str(tmp_path / "qdrant")))
    old.upsert(manifest("old-model"), catalog(1200))
    old.upsert(manifest("new-model", sha="cd" * 32, dimension=8), catalog(30, dim=8, seed=4))
    old.set_current("new-model")
    old.close()
    return Settings(data_dir=tmp_path)


def test_the_old_store_moves_over_once_point_for_point(settings: Settings) -> None:
    old = QdrantStore(local_client(str(settings.data_dir / "qdrant")))
    expected = {m: everything(old, m) for m in ("old-model", "new-model")}
    old.close()

    # Nothing opens the new store over the old one's head: it says how to migrate.
    with pytest.raises(StoreUnavailable, match="lookalike store migrate"):
        current.open_store(settings)

    progress: list[tuple[str, int, int]] = []
    store, migrated = current.open_migrated_store(settings, lambda *a: progress.append(a))
    try:
        assert isinstance(store, EdgeStore)
        assert [(m.name, m.points) for m in migrated] == [
            ("lookalike__new-model", 30),
            ("lookalike__old-model", 1200),
        ]
        assert progress[-1] == ("lookalike__old-model", 1200, 1200)
        assert store.current_model() == "new-model"
        for model_id, points in expected.items():
            moved = everything(store, model_id)
            assert moved.keys() == points.keys()
            for point_id, (vector, payload) in points.items():
                # Payloads verbatim: ingested_at and the model fingerprint are not re-stamped.
                assert moved[point_id][1] == payload
                # Cosine collections store unit vectors (the engine normalises, as a Qdrant
                # server does; local mode kept them as given): the same direction.
                unit = np.asarray(vector) / np.linalg.norm(vector)
                np.testing.assert_allclose(moved[point_id][0], unit, rtol=1e-5, atol=1e-6)
        [old_info] = [c for c in store.collections() if c.model_id == "old-model"]
        assert old_info.model_fingerprint == manifest("old-model").fingerprint
    finally:
        store.close()
    assert not (settings.data_dir / "qdrant").exists()
    assert (settings.data_dir / MIGRATED_FOLDER / "meta.json").is_file()

    # Once: the next open is the plain embedded store, with nothing more to move.
    store, migrated = current.open_migrated_store(settings)
    try:
        assert migrated == []
        assert store.count("old-model") == 1200
    finally:
        store.close()


def test_a_count_that_does_not_match_leaves_the_old_store_in_place(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = EdgeStore.import_points

    def lossy(self: EdgeStore, recorded: Any, points: Any) -> None:
        imported(self, recorded, points[1:])  # one point per page goes missing

    monkeypatch.setattr(EdgeStore, "import_points", lossy)
    with pytest.raises(StoreError, match="the old store holds 30 points but 29 arrived"):
        current.open_migrated_store(settings)
    assert (settings.data_dir / "qdrant" / "meta.json").is_file()
    # Still refused until a migration succeeds.
    with pytest.raises(StoreUnavailable, match="lookalike store migrate"):
        current.open_store(settings)


def test_an_empty_collection_moves_over_too(tmp_path: Path) -> None:
    old = QdrantStore(local_client(str(tmp_path / "qdrant")))
    old.ensure_collection(manifest("empty-model"))
    old.close()
    store, migrated = current.open_migrated_store(Settings(data_dir=tmp_path))
    try:
        assert [(m.name, m.points) for m in migrated] == [("lookalike__empty-model", 0)]
        assert [(c.model_id, c.points) for c in store.collections()] == [("empty-model", 0)]
    finally:
        store.close()
