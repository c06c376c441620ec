"""Queue benchmark: images/s through Redis + a Celery worker + Qdrant vs the in-process path.

Both paths use the same random-weight full-size ViT-S/14, the same photo-sized JPEGs and the
embedded defaults (local-mode Qdrant on disk, embedded Redis), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.ingest_bench import MODEL_ID, ensure_model, make_photos
from ingest.images.blobs import BlobStore
from ingest.images.thumbnails import ThumbnailStore
from ingest.ingestion.bulk import BulkIngestor, folder_sources, upload_events
from ingest.models.runtime import load_runtime
from ingest.state.events import EventTracker
from ingest.store.current import open_store
from schemas.events import EventStatus, UploadEvent
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.producer.publisher import Publisher
from workers.app import app, configure


def wait_settled(tracker: EventTracker, event_ids: list[str], timeout: float = 900) -> None:
    """Poll statuses until every event is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = tracker.statuses(event_ids)
        if all(s is not None and s.status is not EventStatus.QUEUED for s in states):
            failed = [s for s in states if s and s.status is EventStatus.FAILED]
            if failed:
                raise RuntimeError(f"{len(failed)} events failed, first: {failed[0]}")
            return
        time.sleep(0.05)
    raise TimeoutError("the worker did not finish in time")


def main() -> None:
    """Run both paths and print images/s with their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--output", type=Path, default=Path("bench/results/queue.json"))
    args = parser.parse_args()
    models_dir = args.work_dir / "models"
    ensure_model(models_dir)
    photos = make_photos(args.work_dir / "photos-queue", args.images, (1600, 1200))
    scratch = Path(tempfile.mkdtemp(prefix="lookalike-queue-bench-"))
    env = {
        "LOOKALIKE_MODELS_DIR": str(models_dir.resolve()),
        "LOOKALIKE_DEFAULT_MODEL": MODEL_ID,
    }
    os.environ.update(env)
    try:
        in_process = measure_in_process(Settings(data_dir=scratch / "inproc"), photos[0].parent)
        queued = measure_queue(Settings(data_dir=scratch / "queue"), photos[0].parent, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    overhead = 1 - queued / in_process
    print(f"\nrandom-weight {MODEL_ID}, {len(photos)} JPEGs of 1600x1200")
    print(f"{'in-process ingest':<32}{in_process:>8.1f} images/s")
    print(f"{'queue (Redis + worker)':<32}{queued:>8.1f} images/s  ({queued / in_process:.2f}x)")
    print(f"queue cost: {overhead:.1%} (goal: under 10%)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "model": MODEL_ID,
                "images": len(photos),
                "in_process_images_per_second": in_process,
                "queue_images_per_second": queued,
                "queue_cost": overhead,
            },
            indent=2,
        )
    )
    print(f"written {args.output}")


def measure_in_process(settings: Settings, folder: Path) -> float:
    """`lookalike ingest FOLDER` without the queue, on the embedded store."""
    runtime = load_runtime(settings, MODEL_ID)
    # Warmed like the worker (which embeds a warm-up batch first): ONNX Runtime's first runs
    # are slower, and a cold in-process side would flatter the queue.
    size = runtime.preprocessing.input_size
    runtime.embedder.embed(np.zeros((4, 3, size, size), dtype=np.float32))
    store = open_store(settings)
    try:
        sources = folder_sources(folder)
        started = time.perf_counter()
        # Thumbnails as `lookalike ingest` and the workers make them: the same work on both sides.
        thumbnails = ThumbnailStore(settings.resolved_thumbnail_dir())
        BulkIngestor(store, [runtime], settings.images, thumbnails=thumbnails).run(
            sources, progress=False
        )
        return len(sources) / (time.perf_counter() - started)
    finally:
        store.close()


def measure_queue(settings: Settings, folder: Path, env: dict[str, str]) -> float:
    """`lookalike ingest FOLDER --queue` with a running worker, after a warm-up batch."""
    with EmbeddedRedis(settings.data_dir / "broker") as redis_server:
        worker_env = {
            **os.environ,
            **env,
            "LOOKALIKE_DATA_DIR": str(settings.data_dir),
            "LOOKALIKE_REDIS_URL": redis_server.url,
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "search_api.cli", "worker", "--loglevel=warning"],
            env=worker_env,
            start_new_session=True,
        )
        try:
            publisher = Publisher.connect(configure(app, settings, redis_server.url))
            blobs = BlobStore(settings.resolved_blob_dir())
            sources = folder_sources(folder)
            warm_up = [
                UploadEvent(item_id=f"warm-{i}", image_uri=e.image_uri)
                for i, e in enumerate(upload_events(sources[:4], blobs, settings.images)[0])
            ]
            wait_settled(publisher.tracker, publisher.publish(warm_up))
            # Producers stage image bytes before they publish (in production on other
            # machines): the clock measures Redis + worker + Qdrant, as the in-process side
            # measures decode + embed + upsert.
            staging_started = time.perf_counter()
            events, _ = upload_events(sources, blobs, settings.images)
            staging = time.perf_counter() - staging_started
            started = time.perf_counter()
            wait_settled(publisher.tracker, publisher.publish(events))
            elapsed = time.perf_counter() - started
            print(f"producer staging (blob copies): {len(events) / staging:.1f} images/s")
            return len(events) / elapsed
        finally:
            worker.terminate()
            worker.wait(timeout=60)


if __name__ == "__main__":
    main()
