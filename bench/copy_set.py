"""A labelled copy-detection set, Copydays-style, from the freely licensed photos packages ship.

Every source photo is a class, shared by its copies (crops, rescales, JPEG, rotations, flip,
colour, blur, overlays, padding, a screenshot frame); the build is seeded and offline. Only real
photographs, with origin and licence as the shipping package's own docs state them:

photo               package    origin                                            licence
=================== ========== ================================================= ================
astronaut           skimage    NASA Great Images (Eileen Collins)                public domain
camera              skimage    photographer Lav Varshney                         CC0
chelsea (cat)       skimage    photographer Stefan van der Walt                  CC0
coffee              skimage    photographer Rachel Michetti (Pikolo Espresso)    CC0
hubble_deep_field   skimage    NASA / HubbleSite, eXtreme Deep Field             public domain
ihc                 skimage    CMMI, immunohistochemistry micrograph             no known restr.
retina              skimage    Wikimedia Commons, Mikael Häggström               CC0 1.0
rocket              skimage    SpaceX Photos (DSCOVR launch)                     public domain
motorcycle_left     skimage    Middlebury 2014 stereo benchmark (left view)      not stated
clock_motion        skimage    photographer Stefan van der Walt                  public domain
coins               skimage    Brooklyn Museum Collection                        no known restr.
text                skimage    Wikipedia File:Corner.png                         public domain
brick               skimage    CC0Textures Bricks25 (warped, cropped)            CC0
grass               skimage    DeviantArt linolafett Grass-01                    CC0
gravel              skimage    CC0Textures Gravel04                              CC0
china               sklearn    Flickr danielbuechele 6061409035                  CC BY 2.0
flower              sklearn    Flickr vultilion 6056698931                       CC BY 2.0
grace_hopper        matplotlib U.S. Navy official portrait (sample_data)         not stated [1]

[1] matplotlib states no licence; as a U.S. Navy photo it is a public-domain federal work (our
reading, not matplotlib's). motorcycle_left: skimage cites the benchmark but states no licence.
Left out: horse (a silhouette), page (a scanned page), moon (no licence stated), cell (a phase
image), microaneurysms (a 102 px crop of a retina), logo/color/chessboard (drawn), eagle and
lily (not bundled: skimage downloads them), motorcycle_right (the left view's scene again).
"""

from __future__ import annotations

import csv
import importlib.util
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from PIL.ImageFont import load_default as font

CSV_NAME = "set.csv"
DEFAULT_SEED = 0
# Sources are scaled to this longest side first: every model sees 224 px or less, and it keeps
# the build well under a minute.
MAX_SIDE = 512
COPY_QUALITY = 90  # JPEG quality of every copy that is not itself a JPEG test
# Where each package keeps its sample photos, relative to the package's own folder.
DATA_DIRS = {"skimage": "data", "sklearn": "datasets/images", "matplotlib": "mpl-data/sample_data"}


@dataclass(frozen=True)
class Photo:
    """One source photo: the package that ships it, its file there, origin and licence."""

    package: str
    file: str
    origin: str
    licence: str

    def path(self) -> Path:
        """Where the installed package keeps the file (found without importing the package)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"{self.package} is not installed: it ships {self.file}")
        return Path(spec.origin).parent / DATA_DIRS[self.package] / self.file


SK, SKL, MPL = "skimage", "sklearn", "matplotlib"
SOURCES: dict[str, Photo] = {
    name: Photo(package, file, origin, licence)
    for name, package, file, origin, licence in (
        ("astronaut", SK, "astronaut.png", "NASA Great Images", "public domain"),
        ("camera", SK, "camera.png", "photographer Lav Varshney", "CC0"),
        ("chelsea", SK, "chelsea.png", "photographer Stefan van der Walt", "CC0"),
        ("coffee", SK, "coffee.png", "photographer Rachel Michetti", "CC0"),
        ("hubble_deep_field", SK, "hubble_deep_field.jpg", "NASA, HubbleSite", "public domain"),
        ("ihc", SK, "ihc.png", "CMMI", "no known copyright restrictions"),
        ("retina", SK, "retina.jpg", "Wikimedia Commons, M. Häggström", "CC0 1.0"),
        ("rocket", SK, "rocket.jpg", "SpaceX Photos on Flickr", "public domain"),
        ("motorcycle_left", SK, "motorcycle_left.png", "Middlebury 2014 stereo", "not stated"),
        ("clock_motion", SK, "clock_motion.png", "photographer S. van der Walt", "public domain"),
        ("coins", SK, "coins.png", "Brooklyn Museum", "no known copyright restrictions"),
        ("text", SK, "text.png", "Wikipedia File:Corner.png", "public domain"),
        ("brick", SK, "brick.png", "CC0Textures Bricks25", "CC0"),
        ("grass", SK, "grass.png", "DeviantArt linolafett Grass-01", "CC0"),
        ("gravel", SK, "gravel.png", "CC0Textures Gravel04", "CC0"),
        ("china", SKL, "china.jpg", "Flickr danielbuechele", "CC BY 2.0"),
        ("flower", SKL, "flower.jpg", "Flickr vultilion", "CC BY 2.0"),
        ("grace_hopper", MPL, "grace_hopper.jpg", "U.S. Navy portrait", "not stated"),
    )
}


@dataclass(frozen=True)
class CopyItem:
    """One image of the set: a row of set.csv (``image`` is relative to the set's folder)."""

    item_id: str
    image: str
    source: str
    transform: str
    strength: str


# A copy maker gets the source, a seeded generator and another source to paste as a logo.
Maker = Callable[[Image.Image, random.Random, Image.Image], Image.Image]


def _crop(area: float) -> Maker:
    def make(image: Image.Image, rng: random.Random, _: Image.Image) -> Image.Image:
        # Keep `area` of the surface at a random place, as Copydays' crops do.
        width, height = round(image.width * area**0.5), round(image.height * area**0.5)
        left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
        return image.crop((left, top, left + width, top + height))

    return make


def _rescale(factor: float) -> Maker:
    return lambda image, _r, _l: ImageOps.scale(image, factor, Image.Resampling.LANCZOS)


def _rotate(degrees: float) -> Maker:
    # Pillow turns anticlockwise for positive angles; the corners come out black.
    return lambda image, _r, _l: image.rotate(degrees, Image.Resampling.BICUBIC, expand=True)


def _enhance(kind: type[ImageEnhance.Brightness | ImageEnhance.Contrast], factor: float) -> Maker:
    return lambda image, _r, _l: kind(image).enhance(factor)


def _colour_shift(strength: float) -> Maker:
    def make(image: Image.Image, _r: random.Random, _l: Image.Image) -> Image.Image:
        # A warm cast: red up, blue down, on top of a saturation change.
        red, green, blue = ImageEnhance.Color(image).enhance(1 + strength).split()
        red = red.point(lambda v: min(255, round(v * (1 + strength / 2))))
        blue = blue.point(lambda v: round(v * (1 - strength / 2)))
        return Image.merge("RGB", (red, green, blue))

    return make


def _blur(radius: float) -> Maker:
    return lambda image, _r, _l: image.filter(ImageFilter.GaussianBlur(radius))


def _text(image: Image.Image, rng: random.Random, _: Image.Image) -> Image.Image:
    out, size = image.copy(), max(12, image.height // 10)
    draw = ImageDraw.Draw(out)
    top = rng.randint(image.height // 2, image.height - 2 * size)
    text, left = "SALE -40%\nlookalike.example", image.width // 12
    draw.text((left, top), text, "white", font(size), stroke_width=2, stroke_fill="black")
    return out


def _logo(image: Image.Image, _: random.Random, logo: Image.Image) -> Image.Image:
    out = image.copy()
    badge = ImageOps.expand(
        ImageOps.contain(logo, (image.width // 4, image.height // 4)), 3, "white"
    )
    out.paste(badge, (image.width - badge.width - 8, image.height - badge.height - 8))
    return out


def _letterbox(image: Image.Image, _r: random.Random, _l: Image.Image) -> Image.Image:
    # Black bars on both sides: the copy is 60 % wider than the photo (16:9 players do this).
    return ImageOps.pad(image, (round(image.width * 1.6), image.height), color="black")


def _screenshot(image: Image.Image, _r: random.Random, _l: Image.Image) -> Image.Image:
    border, bar = 10, max(18, image.height // 14)
    out = Image.new("RGB", (image.width + 2 * border, image.height + bar + 2 * border), "#c8c8c8")
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, out.width, bar + border // 2), fill="#3c3f44")
    for index, colour in enumerate(("#ff5f56", "#ffbd2e", "#27c93f")):
        x = border + index * bar
        draw.ellipse((x, bar // 4, x + bar // 2, bar // 4 + bar // 2), fill=colour)
    draw.text((border + 4 * bar, bar // 5), "photo.jpg - Viewer", "white", font(bar // 2))
    out.paste(image, (border, bar + border))
    return out


BRIGHTNESS, CONTRAST = ImageEnhance.Brightness, ImageEnhance.Contrast
# (transform kind, strength, maker): 24 copies per source. A "jpeg" strength is the quality.
TRANSFORMS: tuple[tuple[str, str, Maker], ...] = (
    *(("crop", f"{area:.0%}", _crop(area)) for area in (0.5, 0.7, 0.9)),
    *(("rescale", f"x{factor}", _rescale(factor)) for factor in (0.3, 0.5)),
    # The JPEG tests change only the encoding.
    *(("jpeg", f"q{quality}", lambda image, _r, _l: image) for quality in (10, 30, 50)),
    *(("rotate", f"{degrees:+d}deg", _rotate(degrees)) for degrees in (-15, 8, 15)),
    ("flip", "horizontal", lambda image, _r, _l: ImageOps.mirror(image)),
    *(("colour", s, _colour_shift(f)) for s, f in (("mild", 0.2), ("strong", 0.6))),
    *(("brightness", s, _enhance(BRIGHTNESS, f)) for s, f in (("mild", 1.25), ("strong", 0.45))),
    *(("contrast", s, _enhance(CONTRAST, f)) for s, f in (("mild", 1.3), ("strong", 0.4))),
    *(("blur", f"r{radius}", _blur(radius)) for radius in (2, 5)),
    ("text", "caption", _text),
    ("logo", "corner", _logo),
    ("letterbox", "bars", _letterbox),
    ("screenshot", "frame", _screenshot),
)
# The rows of each source: its original first, then one per transform.
KINDS = (("original", ""), *((kind, strength) for kind, strength, _ in TRANSFORMS))


def load_source(photo: Photo) -> Image.Image:
    """The photo as RGB, its longest side at most ``MAX_SIDE``."""
    with Image.open(photo.path()) as opened:
        image = opened.convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def _item(source: str, transform: str, strength: str) -> CopyItem:
    item_id = f"{source}--{transform}-{strength}".replace("%", "pct").rstrip("-")
    suffix = "png" if transform == "original" else "jpg"  # originals stay lossless
    return CopyItem(item_id, f"{item_id}.{suffix}", source, transform, strength)


def planned_items() -> list[CopyItem]:
    """The rows of set.csv, in order, without building or reading anything."""
    return [_item(name, kind, strength) for name in sorted(SOURCES) for kind, strength in KINDS]


def build_copy_set(folder: Path, *, seed: int = DEFAULT_SEED) -> list[CopyItem]:
    """Write every source and its copies into ``folder`` plus set.csv; the rows, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = sorted(SOURCES)
    photos = {name: load_source(SOURCES[name]) for name in names}
    for position, name in enumerate(names):
        image = photos[name]
        image.save(folder / _item(name, "original", "").image)
        # The next source (in name order) is the pasted logo: deterministic, never itself.
        logo = photos[names[(position + 1) % len(names)]]
        for transform, strength, make in TRANSFORMS:
            copy = make(image, rng, logo).convert("RGB")
            quality = int(strength[1:]) if transform == "jpeg" else COPY_QUALITY
            copy.save(folder / _item(name, transform, strength).image, quality=quality)
    with (folder / CSV_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in fields(CopyItem)])
        writer.writeheader()
        writer.writerows(asdict(item) for item in planned_items())
    return planned_items()
