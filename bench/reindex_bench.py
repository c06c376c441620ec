"""Re-index benchmark: `lookalike reindex --to MODEL` throughput next to in-process ingestion.

Model A is the full-size random-weight ViT-S/14 of `bench.ingest_bench`; model B is the same
ONNX file registered under another id with other normalisation (as the tests do), so both
embed at the same speed and B's vectors really differ. On the same photo-sized JPEGs, in the
same run: ingestion into A (the baseline, whole ingest path), the Reindexer's pages run
in-process with a real embedded Redis for the job record (as tests/ingest/test_reindex.py
does), then the same job through the queue with a real `lookalike worker` process. Also: how
long the final alias switch takes, and the p50 of similar-by-vector queries on the old
collection between pages vs with no re-index running.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from bench.ingest_bench import MODEL_ID, ensure_model, make_photos
from bench.queue_bench import measure_in_process, wait_settled
from ingest.images.blobs import BlobStore
from ingest.images.sources import SourceResolver
from ingest.ingestion.bulk import folder_sources, upload_events
from ingest.models.registry import KNOWN_MODELS, ModelRegistry
from ingest.models.runtime import ModelRuntime, load_runtime
from ingest.reindex.reindexer import Reindexer, Step
from ingest.state.reindex_jobs import PAGE_SIZE, ReindexJobs
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from ingest.store.edge import EdgeStore
from schemas.events import UploadEvent
from schemas.reindex import ReindexJob, ReindexState
from schemas.settings import Settings, SourceSettings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.cli.reindex import POLL_SECONDS
from search_api.producer.jobs import enqueue_reindex
from search_api.producer.publisher import Publisher
from workers.app import app, configure

TARGET_ID = f"{MODEL_ID}-bench-other"
QUERIES_PER_GAP = 15
QUERY_LIMIT = 10


def ensure_target_model(registry: ModelRegistry) -> None:
    """Model A's ONNX file again under TARGET_ID, with other mean/std: same speed, other vectors."""
    if registry.model_path(TARGET_ID).is_file():
        return
    preprocessing = KNOWN_MODELS[MODEL_ID].preprocessing.model_copy(
        update={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    )
    registry.register(
        registry.model_path(MODEL_ID), TARGET_ID, preprocessing=preprocessing, random_weights=True
    )


class TimedStore(EdgeStore):
    """The embedded store, timing the alias switch that ends a re-index."""

    switch_seconds: float | None = None

    def set_current(self, model_id: str) -> None:
        """Move the alias, and remember how long it took."""
        started = time.perf_counter()
        super().set_current(model_id)
        self.switch_seconds = time.perf_counter() - started


@dataclass
class InProcessRun:
    """One in-process re-index: its job, timings and query latencies (seconds)."""

    job: ReindexJob
    pages_seconds: float
    finish_seconds: float
    switch_seconds: float
    idle_queries: list[float] = field(default_factory=list)
    during_queries: list[float] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Re-embedded images per second of job time (pages + finish), queries excluded."""
        return self.job.done / (self.pages_seconds + self.finish_seconds)


def timed_queries(store: VectorStore, vectors: list[list[float]], count: int) -> list[float]:
    """Seconds of ``count`` similar-by-vector queries on model A's (the old) collection."""
    seconds = []
    for index in range(count):
        started = time.perf_counter()
        hits = store.query(MODEL_ID, vector=vectors[index % len(vectors)], limit=QUERY_LIMIT)
        seconds.append(time.perf_counter() - started)
        assert len(hits) == QUERY_LIMIT
    return seconds


def reindex_in_process(
    settings: Settings, jobs: ReindexJobs, page_size: int, runs: int
) -> list[InProcessRun]:
    """Re-index A into B page by page, ``runs`` times from scratch; queries between pages."""
    store = TimedStore.from_settings(settings)
    assert isinstance(store, TimedStore)
    reindexer = Reindexer(
        settings=settings,
        store=store,
        jobs=jobs,
        resolver=SourceResolver(settings),
        load_runtime=functools.partial(load_runtime, settings),
    )
    results = []
    try:
        sample, _ = store.scroll(MODEL_ID, limit=5, with_vectors=True)
        vectors = [point.vector for point in sample if point.vector is not None]
        for _ in range(runs):
            if store.current_model() == TARGET_ID:
                # Back to "A is current, B does not exist" so the run re-embeds everything.
                store.set_current(MODEL_ID)
                store.drop_collection(TARGET_ID)
            idle = timed_queries(store, vectors, QUERIES_PER_GAP * 2)
            job = jobs.create(TARGET_ID, page_size=page_size)
            step = Step("page", 0, None)
            during: list[float] = []
            pages_seconds = 0.0
            while step.kind == "page":
                started = time.perf_counter()
                step = reindexer.run_page(job.job_id, step.page, step.offset)
                if step.kind == "page":
                    jobs.update(job.job_id, pages_queued=step.page + 1)  # as Reindexer.run
                pages_seconds += time.perf_counter() - started
                # Between pages: searches still go to the old collection, and answer.
                assert store.current_model() in (None, MODEL_ID)
                during += timed_queries(store, vectors, QUERIES_PER_GAP)
            if step.kind != "finish":
                raise RuntimeError(f"re-index stopped: {jobs.require(job.job_id)}")
            started = time.perf_counter()
            finished = reindexer.finish(job.job_id)
            finish_seconds = time.perf_counter() - started
            check_done(finished, store.count(MODEL_ID))
            assert store.current_model() == TARGET_ID
            assert store.switch_seconds is not None
            results.append(
                InProcessRun(
                    finished, pages_seconds, finish_seconds, store.switch_seconds, idle, during
                )
            )
    finally:
        store.close()
    return results


def check_done(job: ReindexJob, images: int) -> None:
    """The job re-embedded every image, none failed, and the alias moved."""
    if job.state is not ReindexState.DONE or job.failed or not job.switched or job.done != images:
        raise RuntimeError(f"re-index did not complete as expected: {job}")


def reindex_queue(
    settings: Settings, folder: Path, env: dict[str, str], page_size: int
) -> tuple[ReindexJob, float]:
    """`lookalike reindex --to B` against a warmed-up `lookalike worker`; (job, seconds)."""
    with EmbeddedRedis(settings.data_dir / "broker") as redis_server:
        worker_env = {
            **os.environ,
            **env,
            "LOOKALIKE_DATA_DIR": str(settings.data_dir),
            "LOOKALIKE_REDIS_URL": redis_server.url,
            # Warm-up uploads are embedded with both models, so that the worker's sessions are
            # loaded before the clock starts (as the in-process side's are).
            "LOOKALIKE_ENABLED_MODELS": json.dumps([MODEL_ID, TARGET_ID]),
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "search_api.cli", "worker", "--loglevel=warning"],
            env=worker_env,
            start_new_session=True,
        )
        client = redis.Redis.from_url(redis_server.url)
        try:
            celery = configure(app, settings, redis_server.url)
            publisher = Publisher.connect(celery)
            blobs = BlobStore(settings.resolved_blob_dir())
            staged, _ = upload_events(folder_sources(folder)[:2], blobs, settings.images)
            warm_up = [
                UploadEvent(item_id=f"warm-{i}", image_uri=e.image_uri)
                for i, e in enumerate(staged)
            ]
            wait_settled(publisher.tracker, publisher.publish(warm_up))
            jobs = ReindexJobs(client, prefix=settings.collection_prefix)
            enqueued = time.time()
            job = enqueue_reindex(celery, jobs, TARGET_ID, page_size=page_size)
            # Polled as `lookalike reindex` follows a job; the clock stops at the job's own
            # finish time, so the poll interval does not round the measurement.
            while not (job := jobs.require(job.job_id)).finished:
                if time.time() - enqueued > 600:
                    raise TimeoutError(f"the worker did not finish the re-index: {job}")
                time.sleep(POLL_SECONDS)
            assert job.finished_at is not None
            elapsed = job.finished_at.timestamp() - enqueued
        finally:
            client.close()
            worker.terminate()
            worker.wait(timeout=60)
    # The warm-up items were already in B: skipped, not re-embedded.
    store = open_store(settings)
    try:
        check_done(job, store.count(MODEL_ID) - len(warm_up))
        assert job.skipped == len(warm_up)
        assert store.current_model() == TARGET_ID
    finally:
        store.close()
    return job, elapsed


def p50_ms(seconds: list[float]) -> float:
    """Median in milliseconds."""
    return statistics.median(seconds) * 1000


def warm(runtime: ModelRuntime) -> None:
    """One batch through the embedder (its first run allocates)."""
    rng = np.random.default_rng(0)
    runtime.embedder.embed(rng.standard_normal((4, 3, 224, 224), dtype=np.float32))


def main() -> None:
    """Run every measurement, print a table with ratios and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-queue", action="store_true", help="Skip the worker measurement.")
    parser.add_argument("--output", type=Path, default=Path("bench/results/reindex.json"))
    args = parser.parse_args()
    models_dir = args.work_dir / "models"
    registry = ensure_model(models_dir)
    ensure_target_model(registry)
    photos = make_photos(args.work_dir / "photos-reindex", args.images, (1600, 1200))
    folder = photos[0].parent.resolve()
    env = {
        "LOOKALIKE_MODELS_DIR": str(models_dir.resolve()),
        "LOOKALIKE_DEFAULT_MODEL": MODEL_ID,
        # Folder ingestion stores file:// URIs, which a re-index reads again.
        "LOOKALIKE_SOURCES__FILE_ROOTS": json.dumps([str(folder)]),
    }
    os.environ.update(env)
    scratch = Path(tempfile.mkdtemp(prefix="lookalike-reindex-bench-"))
    sources = SourceSettings(file_roots=[folder])

    def settings_in(name: str) -> Settings:
        return Settings(data_dir=scratch / name, sources=sources)

    try:
        base = settings_in("inproc")
        warm(load_runtime(base, MODEL_ID))
        started = time.perf_counter()
        warm(load_runtime(base, TARGET_ID))
        target_load = time.perf_counter() - started
        baselines = [measure_in_process(base, folder)]
        if not args.no_queue:
            # The queue run starts from the same collection A, copied while nobody holds it.
            shutil.copytree(base.data_dir, scratch / "queue")
        with EmbeddedRedis(scratch / "jobs-redis") as server:
            client = redis.Redis.from_url(server.url)
            try:
                jobs = ReindexJobs(client, prefix=base.collection_prefix)
                runs = reindex_in_process(base, jobs, args.page_size, args.repeats)
            finally:
                client.close()
        for index in range(1, args.repeats):
            baselines.append(measure_in_process(settings_in(f"baseline-{index}"), folder))
        queued = None
        if not args.no_queue:
            queued = reindex_queue(settings_in("queue"), folder, env, args.page_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(args, len(photos), target_load, baselines, runs, queued)


def report(
    args: argparse.Namespace,
    images: int,
    target_load: float,
    baselines: list[float],
    runs: list[InProcessRun],
    queued: tuple[ReindexJob, float] | None,
) -> None:
    """Print the table and write bench/results/reindex.json."""
    baseline = max(baselines)
    best = max(runs, key=lambda run: run.images_per_second)
    rates = {
        "ingest_in_process (baseline)": baseline,
        "reindex_in_process": best.images_per_second,
    }
    worker_seconds = None
    if queued is not None:
        job, wall = queued
        rates["reindex_queue (worker)"] = job.done / wall
        if job.started_at is not None and job.finished_at is not None:
            # What `lookalike reindex` reports: from the first page's start to the switch.
            worker_seconds = (job.finished_at - job.started_at).total_seconds()
    idle = [s for run in runs for s in run.idle_queries]
    during = [s for run in runs for s in run.during_queries]
    print(
        f"\nrandom-weight {MODEL_ID} -> {TARGET_ID}, {images} JPEGs of 1600x1200, "
        f"page size {args.page_size}, best of {args.repeats} in-process runs"
    )
    print(f"{'measurement':<32}{'images/s':>10}{'vs baseline':>14}")
    for name, value in rates.items():
        print(f"{name:<32}{value:>10.1f}{value / baseline:>13.2f}x")
    print(f"baseline runs: {', '.join(f'{b:.1f}' for b in baselines)} images/s")
    print(
        "in-process re-index runs: "
        + ", ".join(f"{run.images_per_second:.1f}" for run in runs)
        + " images/s"
    )
    print(
        f"finish (reconcile + alias switch + catch-up): "
        f"{min(r.finish_seconds for r in runs) * 1000:.1f} ms, of which alias switch "
        f"{min(r.switch_seconds for r in runs) * 1000:.1f} ms"
    )
    if queued is not None and worker_seconds is not None:
        print(
            f"queue: {queued[1]:.2f} s from enqueue to done, {worker_seconds:.2f} s in the "
            f"job record ({queued[0].done / worker_seconds:.1f} images/s, "
            f"{queued[0].pages_done} page task(s))"
        )
    print(f"first load of {TARGET_ID} (checksum + session): {target_load:.2f} s")
    print(
        f"query p50 on the old collection ({QUERY_LIMIT} hits, similar-by-vector): "
        f"{p50_ms(idle):.2f} ms idle, {p50_ms(during):.2f} ms between re-index pages "
        f"({len(idle)} and {len(during)} queries)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "model": MODEL_ID,
                "target_model": TARGET_ID,
                "random_weights": True,
                "images": images,
                "image_size": [1600, 1200],
                "page_size": args.page_size,
                "machine": platform.platform(),
                "images_per_second": rates,
                "ratios_vs_baseline": {k: v / baseline for k, v in rates.items()},
                "baseline_runs": baselines,
                "reindex_in_process_runs": [run.images_per_second for run in runs],
                "finish_seconds": [run.finish_seconds for run in runs],
                "alias_switch_seconds": [run.switch_seconds for run in runs],
                "target_first_load_seconds": target_load,
                "queue_seconds": queued[1] if queued else None,
                "queue_job_record_seconds": worker_seconds,
                "query_p50_ms": {"idle": p50_ms(idle), "between_pages": p50_ms(during)},
            },
            indent=2,
        )
    )
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
