"""EdgeStore's own promises: persistence, atomic files, one owner, durability, index builds.

What it answers is checked against Qdrant in test_store_congruence.py; here are the things
only an embedded store has to get right, with real processes where processes matter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.errors import CollectionMismatch, ItemNotFound, StoreError, StoreUnavailable
from ingest.store.base import point_id
from ingest.store.edge import EdgeStore
from schemas.models import ModelManifest, ModelSpec
from schemas.points import MatchCondition, NewPoint, PayloadFilter
from schemas.settings import Settings
from tests.ingest.store_support import held_elsewhere, start_holder

DIM = 16
MODEL_ID = "edge-model"


def manifest(model_id: str = MODEL_ID, sha: str = "ab" * 32, dimension: int = DIM) -> ModelManifest:
    return ModelManifest(
        spec=ModelSpec(id=model_id, family="custom", dimension=dimension), sha256=sha, source="test"
    )


def catalog(n: int, *, dim: int = DIM, seed: int = 3, start: int = 0) -> list[NewPoint]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim))
    return [
        NewPoint(
            item_id=f"item-{start + i:05d}",
            image_sha256=f"{start + i:064x}",
            vector=vectors[i].tolist(),
            source_uri=f"file:///catalog/{start + i}.jpg",
            metadata={"brand": ("acme", "globex", "hooli")[i % 3], "flag": True},
        )
        for i in range(n)
    ]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "edge"


@pytest.fixture
def store(root: Path) -> Iterator[EdgeStore]:
    opened = EdgeStore(root)
    yield opened
    opened.close()


# --- persistence --------------------------------------------------------------------------


def test_everything_survives_a_reopen(root: Path) -> None:
    first = EdgeStore(root)
    ids = first.upsert(manifest(), catalog(30))
    first.upsert(manifest("second", dimension=8), catalog(4, dim=8))
    first.set_current("second")
    first.update_item_payload(MODEL_ID, "item-00003", {"brand": "newco"})
    first.delete_item(MODEL_ID, "item-00004")
    before = (first.collections(), first.query(MODEL_ID, point_id=ids[0], limit=5))
    first.close()

    reopened = EdgeStore(root)
    try:
        assert (reopened.collections(), reopened.query(MODEL_ID, point_id=ids[0], limit=5)) == (
            before
        )
        assert reopened.current_model() == "second"
        assert reopened.count(MODEL_ID) == 29
        [updated] = reopened.retrieve(MODEL_ID, [ids[3]])
        assert updated.payload["brand"] == "newco"
        assert {f.value: f.count for f in reopened.facet(MODEL_ID, "brand")}["newco"] == 1
        with pytest.raises(CollectionMismatch, match="reindex --to NEW_ID"):
            reopened.upsert(manifest(sha="cd" * 32), catalog(1))
    finally:
        reopened.close()
    record = json.loads((root / "lookalike__edge-model" / "collection.json").read_text())
    assert record == {
        "model_id": MODEL_ID,
        "model_fingerprint": manifest().fingerprint,
        "dimension": DIM,
        "schema_version": 1,
    }


def test_payload_indexes_added_to_the_settings_are_created_on_open(root: Path) -> None:
    unindexed = EdgeStore(root, payload_indexes=())
    unindexed.upsert(manifest(), catalog(9))
    with pytest.raises(StoreError, match="add the field to LOOKALIKE_PAYLOAD_INDEXES"):
        unindexed.facet(MODEL_ID, "brand")
    unindexed.close()

    indexed = EdgeStore(root, payload_indexes=("brand",))
    try:
        assert {f.value: f.count for f in indexed.facet(MODEL_ID, "brand")} == {
            "acme": 3,
            "globex": 3,
            "hooli": 3,
        }
    finally:
        indexed.close()


def test_from_settings_puts_the_store_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", collection_prefix="shop")
    opened = EdgeStore.from_settings(settings)
    try:
        opened.upsert(manifest(), catalog(1))
        assert (tmp_path / "data" / "edge" / "shop__edge-model" / "shard").is_dir()
    finally:
        opened.close()


# --- the alias manifest is replaced atomically --------------------------------------------


def test_alias_manifest_is_written_to_a_temp_file_fsynced_then_renamed(
    store: EdgeStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert(manifest(), catalog(2))
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(source: Any, target: Any) -> None:
        events.append(f"replace {Path(source).name.startswith('.aliases.json.')}")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)  # the store's os is this os
    monkeypatch.setattr(os, "replace", replace)
    store.set_current(MODEL_ID)
    assert events == ["fsync file", "replace True", "fsync dir"]


def test_a_failed_alias_write_keeps_the_previous_alias(
    store: EdgeStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert(manifest(), catalog(2))
    store.upsert(manifest("second"), catalog(2))
    store.set_current(MODEL_ID)

    def crash(source: Any, target: Any) -> None:
        raise OSError(5, "Input/output error")  # as if the process died before the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreUnavailable, match="Input/output error"):
        store.set_current("second")
    monkeypatch.undo()

    assert store.current_model() == MODEL_ID
    assert json.loads((root / "aliases.json").read_text()) == {
        "aliases": {"lookalike": "lookalike__edge-model"}
    }
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_readers_never_see_a_torn_alias_manifest(store: EdgeStore, root: Path) -> None:
    store.upsert(manifest(), catalog(2))
    store.upsert(manifest("second"), catalog(2))
    store.set_current(MODEL_ID)
    seen: list[Any] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(json.loads((root / "aliases.json").read_text())["aliases"]["lookalike"])
            except (ValueError, KeyError) as exc:
                seen.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for flip in range(150):
        store.set_current(("second", MODEL_ID)[flip % 2])
    done.set()
    reader.join()
    assert set(map(str, seen)) <= {"lookalike__second", "lookalike__edge-model"}


# --- one owning process -------------------------------------------------------------------


def test_a_store_held_by_another_process_is_refused_in_one_line(root: Path) -> None:
    with held_elsewhere(root) as pid, pytest.raises(StoreUnavailable) as refused:
        EdgeStore(root)
    message = str(refused.value)
    assert "\n" not in message
    assert str(root) in message
    assert f"process {pid}" in message
    assert "LOOKALIKE_QDRANT_URL" in message
    # No lock traceback chained to it: `from None` suppresses the BlockingIOError.
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__
    assert not (root / "owner.pid").exists()  # a clean close removes it
    EdgeStore(root).close()


def test_a_killed_owner_leaves_no_stale_lock(root: Path) -> None:
    holder = start_holder(root)
    holder.kill()
    holder.wait(timeout=30)
    assert (root / "owner.pid").exists()  # left behind by the SIGKILL, and harmless
    reopened = EdgeStore(root)
    try:
        assert json.loads((root / "owner.pid").read_text()) == {"pid": os.getpid()}
    finally:
        reopened.close()


def test_a_second_store_on_the_same_root_in_one_process_is_refused(store: EdgeStore) -> None:
    with pytest.raises(StoreUnavailable, match=r"already open in this process \(pid \d+\)"):
        EdgeStore(store.root)


# --- durability ---------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
import numpy as np
from ingest.store.edge import EdgeStore
from schemas.models import ModelManifest, ModelSpec
from schemas.points import NewPoint
model = ModelManifest(
    spec=ModelSpec(id="edge-model", family="custom", dimension=16), sha256="ab" * 32,
    source="test",
)
store = EdgeStore(Path(sys.argv[1]))
rng = np.random.default_rng(0)
acknowledged = 0
for batch in range(100_000):
    points = [
        NewPoint(
            item_id=f"item-{batch}-{j}", image_sha256=f"{j:064x}",
            vector=rng.normal(size=16).tolist(), source_uri="file:///x",
        )
        for j in range(16)
    ]
    store.upsert(model, points)
    acknowledged += len(points)
    print(acknowledged, flush=True)
"""


def test_sigkill_during_upserts_loses_no_acknowledged_point(root: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = 0
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 40 * 16:
            break
    writer.send_signal(signal.SIGKILL)  # in the middle of a later batch's upsert or flush
    rest, _ = writer.communicate(timeout=30)
    # Lines printed before the kill were acknowledged too.
    acknowledged = max([acknowledged, *map(int, rest.split())])
    assert writer.returncode == -signal.SIGKILL

    reopened = EdgeStore(root)
    try:
        assert reopened.count(MODEL_ID) >= acknowledged
    finally:
        reopened.close()


# --- crash recovery -----------------------------------------------------------------------


def test_an_interrupted_index_swap_is_undone_on_open(root: Path, tmp_path: Path) -> None:
    first = EdgeStore(root)
    first.upsert(manifest(), catalog(10))
    first.close()
    folder = root / "lookalike__edge-model"
    shutil.copytree(folder / "shard", tmp_path / "stale-copy")  # 10 points
    again = EdgeStore(root)
    again.upsert(manifest(), catalog(5, start=10))
    again.close()
    # A crash between the swap's renames and its commit: the retired shard has every write.
    os.rename(folder / "shard", folder / "shard.retired")
    shutil.copytree(tmp_path / "stale-copy", folder / "shard")
    shutil.copytree(tmp_path / "stale-copy", folder / "shard.indexing")
    (root / ".staging-lookalike__half-made-0").mkdir()

    recovered = EdgeStore(root)
    try:
        assert recovered.count(MODEL_ID) == 15
        assert sorted(p.name for p in folder.iterdir()) == ["collection.json", "shard"]
        assert [c.name for c in recovered.collections()] == ["lookalike__edge-model"]
        assert not (root / ".staging-lookalike__half-made-0").exists()
    finally:
        recovered.close()


# --- index builds -------------------------------------------------------------------------


def test_queries_and_writes_go_on_while_the_index_is_built(root: Path) -> None:
    dim = 64
    model = manifest(dimension=dim)
    indexed = EdgeStore(root, exact_below=100, indexing_threshold_kb=1)
    try:
        points = catalog(2500, dim=dim)
        for start in range(0, len(points), 500):
            indexed.upsert(model, points[start : start + 500])
        assert indexed.index_state(MODEL_ID).state == "exact"
        query = points[7].vector
        latencies: list[float] = []
        states: list[str] = []
        building = threading.Event()
        result: list[bool] = []

        def build() -> None:
            building.set()
            result.append(indexed.build_index(MODEL_ID))

        def query_rate(seconds: float) -> float:
            began, answered = time.perf_counter(), 0
            while time.perf_counter() - began < seconds:
                indexed.query(MODEL_ID, vector=query, limit=1)
                answered += 1
            return answered / seconds

        quiet_rate = query_rate(0.5)
        builder = threading.Thread(target=build)
        started = time.perf_counter()
        builder.start()
        building.wait()
        late = catalog(3, dim=dim, seed=9, start=90_000)
        while builder.is_alive():
            began = time.perf_counter()
            [hit] = indexed.query(MODEL_ID, vector=query, limit=1)
            latencies.append(time.perf_counter() - began)
            assert hit.item_id == "item-00007"
            states.append(indexed.index_state(MODEL_ID).state)
            if len(latencies) == 50:
                indexed.upsert(model, late[:2])  # written during the build: must survive it
                indexed.delete_item(MODEL_ID, "item-00008")
        builder.join()
        took = time.perf_counter() - started

        assert result == [True]
        assert "indexing" in states
        # Only the copy before and the swap after hold the lock. A build in this process
        # would hold the GIL: queries crawl (25x slower here), or stop (at 20k x 384).
        rate = len(latencies) / took
        assert rate > quiet_rate / 5, (
            f"{rate:.0f} queries/s during the build, {quiet_rate:.0f} before"
        )
        assert max(latencies) < 1.0
        state = indexed.index_state(MODEL_ID)
        assert (state.state, state.points) == ("indexed", 2501)
        assert state.indexed_vectors >= 2500
        assert indexed.count(MODEL_ID) == 2501
        assert indexed.retrieve(MODEL_ID, [point_id(p.item_id, p.image_sha256) for p in late])
        [hit] = indexed.query(MODEL_ID, vector=query, limit=1)
        assert hit.item_id == "item-00007"
        assert not (root / "lookalike__edge-model" / "shard.indexing").exists()
    finally:
        indexed.close()


def test_closing_during_a_build_cancels_it(root: Path) -> None:
    dim = 64
    indexed = EdgeStore(root, indexing_threshold_kb=1)
    indexed.upsert(manifest(dimension=dim), catalog(2500, dim=dim))
    result: list[bool] = []
    builder = threading.Thread(target=lambda: result.append(indexed.build_index(MODEL_ID)))
    builder.start()
    while indexed.index_state(MODEL_ID).state != "indexing":
        time.sleep(0.01)
    indexed.close()
    builder.join(timeout=30)
    assert result == [False]
    reopened = EdgeStore(root)
    try:
        assert reopened.count(MODEL_ID) == 2500
        assert reopened.index_state(MODEL_ID).state == "exact"
        assert not (root / "lookalike__edge-model" / "shard.indexing").exists()
    finally:
        reopened.close()


def test_a_collection_below_the_indexing_threshold_stays_exact(store: EdgeStore) -> None:
    store.upsert(manifest(), catalog(50))
    assert store.build_index(MODEL_ID) is False
    assert store.index_state(MODEL_ID).state == "exact"


# --- what qdrant-edge cannot do is refused clearly ----------------------------------------


def test_boolean_filters_are_refused(store: EdgeStore) -> None:
    store.upsert(manifest(), catalog(3))
    flag = PayloadFilter(must=[MatchCondition(key="flag", value=True)])
    with pytest.raises(StoreError, match="cannot filter on the boolean value of 'flag'"):
        store.count(MODEL_ID, filter=flag)


def test_ids_that_name_no_point_are_missing_points(store: EdgeStore) -> None:
    # The engine refuses a non-UUID id outright; callers expect what local mode says.
    store.upsert(manifest(), catalog(3))
    assert store.retrieve(MODEL_ID, ["not-a-point-id"]) == []
    assert store.delete_points(MODEL_ID, ["not-a-point-id"]) == 0
    with pytest.raises(ItemNotFound, match="no point 'not-a-point-id'"):
        store.query(MODEL_ID, point_id="not-a-point-id")
    with pytest.raises(ValueError, match="invalid scroll offset 'x'"):
        store.scroll(MODEL_ID, offset="x")


def test_engine_errors_become_store_errors(root: Path) -> None:
    damaged = EdgeStore(root)
    damaged.upsert(manifest(), catalog(3))
    damaged.close()
    (root / "lookalike__edge-model" / "shard" / "edge_config.json").write_text("{not json")
    reopened = EdgeStore(root)
    try:
        with pytest.raises(StoreError, match=r"edge_config\.json") as failed:
            reopened.count(MODEL_ID)
        assert type(failed.value) is StoreError
        assert f"the embedded vector store at {root} failed" in str(failed.value)
    finally:
        reopened.close()


def test_a_closed_store_says_so(root: Path) -> None:
    closed = EdgeStore(root)
    closed.upsert(manifest(), catalog(1))
    closed.close()
    closed.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        closed.count(MODEL_ID)
