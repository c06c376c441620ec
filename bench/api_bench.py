"""API latency: p50/p99 of similar-by-id, similar-by-upload and group-by over HTTP.

A collection of 10,000 and one of 100,000 points (synthetic unit vectors of ViT-S/14's 384
dimensions; the query image is embedded by the random-weight full-size model) is served by
`lookalike api` (gunicorn, the embedded store: Qdrant's engine, HNSW-indexed) and queried
with 1 and 8 concurrent clients. The baseline, measured in the same run, is the same store
query made through the same query service in-process, so the ratios show what HTTP and the
server cost. With the embedded store, queries are serialised by its one-process lock, so 8 clients
mostly wait in line; a Qdrant server (LOOKALIKE_QDRANT_URL) serves them in parallel.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.ingest_bench import MODEL_ID, ensure_model
from ingest.models.registry import ModelRegistry
from ingest.store.current import open_store
from ingest.store.edge import EdgeStore
from schemas.points import NewPoint
from schemas.queries import GroupQuery, SimilarityQuery
from schemas.settings import Settings
from search_api.queries.similar import group_query, run_query

SIZES = (10_000, 100_000)
CONCURRENCY = (1, 8)
BUDGET_SECONDS = 12.0  # per measurement: enough requests for a p99 without taking all day


def build_collection(data_dir: Path, models_dir: Path, size: int) -> None:
    """Synthetic points in the embedded store, built (and indexed) once and reused."""
    settings = Settings(data_dir=data_dir, models_dir=models_dir, default_model=MODEL_ID)
    manifest = ModelRegistry(models_dir).manifest(MODEL_ID)
    store = EdgeStore(settings.resolved_store_path(), prefix=settings.collection_prefix)
    try:
        store.ensure_collection(manifest)
        if store.count(MODEL_ID) == size:
            return
        print(f"building a {size}-point collection (once) ...", flush=True)
        rng = np.random.default_rng(size)
        for start in range(0, size, 1000):
            vectors = rng.standard_normal((min(1000, size - start), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            store.upsert(
                manifest,
                [
                    NewPoint(
                        item_id=f"item-{start + i}",
                        image_sha256=f"{start + i:064x}",
                        vector=vector.tolist(),
                        source_uri="bench://synthetic",
                        metadata={
                            "product_id": f"p{(start + i) // 4}",
                            "brand": f"brand-{(start + i) % 20}",
                        },
                    )
                    for i, vector in enumerate(vectors)
                ],
            )
        # What the server's background indexer would do once the load pauses, done here so
        # that the measurements below are of the indexed collection.
        print(f"indexing {size} points ...", flush=True)
        store.build_index(MODEL_ID)
    finally:
        store.close()


def free_port() -> int:
    """A free loopback port for the server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def multipart(image: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one `image` file field."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def post(self, path: str, body: bytes, content_type: str) -> float:
        """Seconds for one request; fails loudly on a non-200 answer."""
        started = time.perf_counter()
        self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status} {payload[:300]!r}")
        return time.perf_counter() - started


def measure(port: int, path: str, body: bytes, content_type: str, concurrency: int) -> list[float]:
    """Latencies of as many requests as fit the time budget (at least a few per client)."""
    deadline = time.perf_counter() + BUDGET_SECONDS
    # Slow queries on 100,000 points take seconds each and 8 clients wait in line for the
    # one-process store: a floor of 8 requests per client would take half an hour.
    floor = 5 if concurrency == 1 else 2

    def client_loop() -> list[float]:
        client = Client(port)
        latencies: list[float] = []
        while len(latencies) < floor or time.perf_counter() < deadline:
            latencies.append(client.post(path, body, content_type))
            if len(latencies) >= 200:
                break
        return latencies

    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(client_loop) for _ in range(concurrency)]
        return [latency for future in futures for latency in future.result()]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    return float(np.percentile(np.array(values), q)) * 1000


def in_process_baseline(data_dir: Path, models_dir: Path, runs: int = 10) -> dict[str, float]:
    """p50 (ms) of the same queries through the same query service, in-process (no HTTP)."""
    settings = Settings(data_dir=data_dir, models_dir=models_dir, default_model=MODEL_ID)
    store = open_store(settings)
    try:
        similar = SimilarityQuery(model_id=MODEL_ID, item_id="item-0", limit=10)
        grouped = GroupQuery(model_id=MODEL_ID, item_id="item-0", group_by="product_id", limit=10)
        calls: dict[str, Callable[[], object]] = {
            "similar_by_id": lambda: run_query(settings, store, similar),
            "group_by": lambda: group_query(settings, store, grouped),
        }
        results = {}
        for name, call in calls.items():
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            results[name] = statistics.median(samples) * 1000
        return results
    finally:
        store.close()


def main() -> None:
    """Build, serve, query, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/api.json"))
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    models_dir = (args.work_dir / "models").resolve()
    ensure_model(models_dir)
    buffer = io.BytesIO()
    Image.effect_mandelbrot((640, 480), (-2, -1.2, 1, 1.2), 64).convert("RGB").save(
        buffer, format="JPEG"
    )
    image_body, image_type = multipart(buffer.getvalue())
    item_body = json.dumps({"item_id": "item-0", "limit": 10}).encode()
    group_body = json.dumps({"item_id": "item-0", "group_by": "product_id", "limit": 10}).encode()
    requests = {
        "similar_by_id": ("/api/v1/similar/item", item_body, "application/json"),
        "similar_by_upload": ("/api/v1/similar/image", image_body, image_type),
        "group_by": ("/api/v1/groups", group_body, "application/json"),
    }
    report: dict[str, object] = {"model": MODEL_ID, "sizes": {}}
    for size in args.sizes:
        data_dir = (args.work_dir / f"api-edge-{size}").resolve()
        build_collection(data_dir, models_dir, size)
        baseline = in_process_baseline(data_dir, models_dir)
        port = free_port()
        env = {
            **os.environ,
            "LOOKALIKE_DATA_DIR": str(data_dir),
            "LOOKALIKE_MODELS_DIR": str(models_dir),
            "LOOKALIKE_DEFAULT_MODEL": MODEL_ID,
            "LOOKALIKE_API__KEYS": "[]",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "search_api.cli",
                "api",
                f"--bind=127.0.0.1:{port}",
                "--threads=8",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(port)
            rows = {}
            for name, (path, body, content_type) in requests.items():
                measure(port, path, body, content_type, 1)  # warm-up: model load, caches
                for concurrency in CONCURRENCY:
                    latencies = measure(port, path, body, content_type, concurrency)
                    rows[f"{name}@c{concurrency}"] = {
                        "requests": len(latencies),
                        "p50_ms": percentile(latencies, 50),
                        "p99_ms": percentile(latencies, 99),
                    }
        finally:
            server.terminate()
            server.wait(timeout=60)
        print(f"\n{size:,} points (baseline: the same query in-process, no HTTP)")
        print(f"{'query':<26}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'p50 / baseline':>16}")
        for key, row in rows.items():
            base = baseline.get(key.split("@")[0])
            ratio = f"{row['p50_ms'] / base:>15.2f}x" if base else f"{'-':>16}"
            print(
                f"{key:<26}{row['requests']:>5}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}{ratio}"
            )
        print("baseline p50 ms: " + ", ".join(f"{k} {v:.1f}" for k, v in baseline.items()))
        report["sizes"][str(size)] = {"http": rows, "in_process_p50_ms": baseline}  # type: ignore[index]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"written {args.output}")


def wait_until_up(port: int, timeout: float = 120) -> None:
    """Poll /healthz until the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("the API server did not start")


if __name__ == "__main__":
    main()
