"""Ingest benchmark: embedder throughput by batch size and the ingest path vs one at a time.

Run with `make bench`. Uses a full-size DINOv2 ViT-S/14 with random weights made by
`lookalike models export --random-init` (speed does not depend on weight values) and
generated photo-sized JPEGs. Numbers are reported as ratios against a baseline measured in
the same run, because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFilter
from qdrant_client import QdrantClient

from ingest.images.decode import load_for_model
from ingest.ingestion.bulk import BulkIngestor, folder_sources
from ingest.models.embedder import OnnxEmbedder, load_embedder
from ingest.models.export import export_onnx
from ingest.models.registry import KNOWN_MODELS, ModelRegistry
from ingest.models.runtime import ModelRuntime
from ingest.store.qdrant import QdrantStore
from schemas.models import Preprocessing
from schemas.settings import ImageLimits

MODEL_ID = "dinov2-vits14"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def ensure_model(models_dir: Path) -> ModelRegistry:
    """Full-size random-weight ViT-S/14, exported once and reused by later runs."""
    registry = ModelRegistry(models_dir)
    if not registry.model_path(MODEL_ID).is_file():
        print(f"exporting random-weight {MODEL_ID} (once) ...", flush=True)
        result = export_onnx(
            KNOWN_MODELS[MODEL_ID], registry.model_path(MODEL_ID), random_init=True
        )
        registry.install(result.spec, result.onnx_path, source="bench", random_weights=True)
    return registry


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Photo-like JPEGs: smooth colour fields, shapes and sensor-like noise, quality 90."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for index in range(count):
        path = folder / f"photo-{index:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
            radius = int(rng.integers(40, 300))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        image = image.filter(ImageFilter.GaussianBlur(2))
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 12, (size[1], size[0], 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


def rate(count: int, work: Callable[[], object], *, repeats: int = 3) -> float:
    """Best items/second over a few repeats (the least disturbed by other load)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = max(best, count / (time.perf_counter() - started))
    return best


def embed_rounds(embedder: OnnxEmbedder, batch: npt.NDArray[np.float32], rounds: int) -> None:
    """The same batch through the embedder ``rounds`` times."""
    for _ in range(rounds):
        embedder.embed(batch)


def decode_all(data: list[bytes], spec: Preprocessing, limits: ImageLimits, draft: bool) -> None:
    """Decode and preprocess every image, with or without the JPEG draft fast path."""
    for blob in data:
        load_for_model(blob, spec, limits, jpeg_draft=draft)


def one_by_one_baseline(model_path: Path, paths: list[Path]) -> Callable[[], object]:
    """The reference embedder: one image at a time, full decode, batch of one."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run() -> None:
        for path in paths:
            image: Image.Image = Image.open(path)
            if image.mode != "RGB":
                image = image.convert("RGB")
            image = image.resize((224, 224), Image.Resampling.BILINEAR)
            array = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
            batch = np.expand_dims(np.transpose(array, (2, 0, 1)), axis=0)
            embedding = np.squeeze(session.run(None, {name: batch})[0])
            embedding = embedding / np.linalg.norm(embedding)

    return run


def main() -> None:
    """Run every measurement, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--output", type=Path, default=Path("bench/results/ingest.json"))
    args = parser.parse_args()

    registry = ensure_model(args.work_dir / "models")
    manifest = registry.manifest(MODEL_ID)
    threads = os.cpu_count() or 1
    embedder = load_embedder(registry, manifest, intra_op_threads=threads)
    paths = make_photos(args.work_dir / "photos", args.images, (1600, 1200))
    limits = ImageLimits()
    spec = manifest.spec.preprocessing
    results: dict[str, float] = {}

    rng = np.random.default_rng(0)
    for batch_size in (1, 8, 32):
        batch = rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32)
        embedder.embed(batch)  # warm-up: first run allocates
        rounds = max(1, 48 // batch_size)
        results[f"embed_batch_{batch_size}"] = rate(
            batch_size * rounds, partial(embed_rounds, embedder, batch, rounds)
        )

    data = [path.read_bytes() for path in paths]
    for draft in (False, True):
        results[f"decode_preprocess_{'draft' if draft else 'full'}"] = rate(
            len(data), partial(decode_all, data, spec, limits, draft)
        )

    results["reference_one_by_one"] = rate(
        len(paths), one_by_one_baseline(registry.model_path(MODEL_ID), paths), repeats=2
    )

    runtime = ModelRuntime(manifest=manifest, embedder=embedder)

    def ingest_all() -> None:
        store = QdrantStore(QdrantClient(location=":memory:"))
        BulkIngestor(store, [runtime], limits, batch_size=16).run(
            folder_sources(paths[0].parent), progress=False
        )
        store.close()

    results["ingest_path"] = rate(len(paths), ingest_all, repeats=2)

    baseline = results["reference_one_by_one"]
    print(f"\nrandom-weight {MODEL_ID}, {len(paths)} JPEGs of 1600x1200, {threads} threads")
    print(f"{'measurement':<28}{'images/s':>10}{'vs one at a time':>18}")
    for name, value in results.items():
        print(f"{name:<28}{value:>10.1f}{value / baseline:>13.2f}x")
    draft_gain = results["decode_preprocess_draft"] / results["decode_preprocess_full"]
    print(f"JPEG draft decode speed-up: {draft_gain:.2f}x")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "model": MODEL_ID,
                "random_weights": True,
                "images": len(paths),
                "image_size": [1600, 1200],
                "threads": threads,
                "machine": platform.platform(),
                "images_per_second": results,
                "ratios_vs_one_by_one": {k: v / baseline for k, v in results.items()},
                "draft_decode_speedup": draft_gain,
            },
            indent=2,
        )
    )
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
