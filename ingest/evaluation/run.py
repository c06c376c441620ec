"""One model evaluated on a labelled image set, through production's decode, embed and store.

The images are ingested by ``BulkIngestor`` into a collection of a store of its own, in
memory (never the user's), with each image's label and role as payload. Every query is then
a ``query`` by its stored point, restricted to the gallery, exactly as "similar items" runs;
duplicate scores are the cosine similarities of every pair of stored vectors.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.evaluation.datasets import LabelledImage, Role
from ingest.evaluation.metrics import (
    DuplicateScores,
    RetrievalScores,
    duplicate_scores,
    retrieval_scores,
)
from ingest.ingestion.bulk import BulkIngestor, SourceImage
from ingest.ingestion.pipeline import ImageJob
from ingest.models.embedder import load_embedder
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import ModelRuntime
from ingest.store.base import VectorStore, scroll_pages
from ingest.store.current import temporary_store
from schemas.ingestion import IngestFailure
from schemas.models import ModelManifest
from schemas.points import AnyOfCondition, PayloadFilter, StoredPoint
from schemas.settings import Settings

DEFAULT_KS = (1, 5, 10)
SCROLL_PAGE = 512
LABEL, ROLE = "eval_label", "eval_role"


@dataclass(frozen=True)
class ModelEvaluation:
    """How well one model (with or without flip TTA) finds similar and duplicate images."""

    model_id: str
    fingerprint: str
    tta: bool
    retrieval: RetrievalScores
    duplicates: DuplicateScores
    images: int
    failures: list[IngestFailure]
    duplicate_pair_scores: list[float]
    distinct_pair_scores: list[float]


def evaluate_model(
    settings: Settings,
    manifest: ModelManifest,
    images: Sequence[LabelledImage],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    tta: bool = False,
    threshold: float | None = None,
    progress: bool = True,
) -> ModelEvaluation:
    """Embed, store and query ``images`` with one model; the scores of the run."""
    embedder = load_embedder(
        ModelRegistry(settings.models_dir),
        manifest,
        intra_op_threads=settings.resolved_intra_op_threads(),
        tta_flip=tta,
        inference_batch=settings.inference_batch,
    )
    runtime = ModelRuntime(manifest=manifest, embedder=embedder)
    model_id = manifest.spec.id
    store = temporary_store("evaluation")
    try:
        summary = BulkIngestor(store, [runtime], settings.images).run(
            [_source(image) for image in images], progress=progress
        )
        points = _stored(store, model_id)
        if not points:
            first = summary.failures[0] if summary.failures else None
            why = f"; the first: [{first.reason}] {first.message}" if first else ""
            raise ValueError(
                f"none of the {len(images)} images could be read: nothing to evaluate{why}"
            )
        retrieval = _retrieval(store, model_id, points, ks)
        duplicate, distinct = _pair_scores(points)
    finally:
        store.close()
    return ModelEvaluation(
        model_id=model_id,
        fingerprint=manifest.fingerprint,
        tta=tta,
        retrieval=retrieval,
        duplicates=duplicate_scores(
            duplicate, distinct, manifest.duplicate_threshold if threshold is None else threshold
        ),
        images=len(points),
        failures=list(summary.failures),
        duplicate_pair_scores=duplicate,
        distinct_pair_scores=distinct,
    )


def _source(image: LabelledImage) -> SourceImage:
    job = ImageJob(
        item_id=image.item_id,
        source_uri=image.path.resolve().as_uri(),
        metadata={LABEL: image.label, ROLE: image.role.value},
    )
    return SourceImage(job=job, path=image.path)


def _stored(store: VectorStore, model_id: str) -> list[StoredPoint]:
    pages = scroll_pages(store, model_id, page_size=SCROLL_PAGE, with_vectors=True)
    return [point for page in pages for point in page]


def _retrieval(
    store: VectorStore, model_id: str, points: Sequence[StoredPoint], ks: Sequence[int]
) -> RetrievalScores:
    """Each query's ranked gallery labels, from the store's own nearest-neighbour query."""
    gallery_roles = [Role.GALLERY.value, Role.BOTH.value]
    in_gallery = PayloadFilter(must=[AnyOfCondition(key=ROLE, values=gallery_roles)])
    gallery_labels = Counter(p.payload[LABEL] for p in points if p.payload[ROLE] in gallery_roles)
    ranked, labels, relevant = [], [], []
    for point in points:
        if point.payload[ROLE] == Role.GALLERY.value:
            continue
        label = point.payload[LABEL]
        # The query point itself is never among its own results (catalog images are both).
        in_itself = 1 if point.payload[ROLE] == Role.BOTH.value else 0
        hits = store.query(model_id, point_id=point.id, filter=in_gallery, limit=max(ks))
        ranked.append([hit.payload[LABEL] for hit in hits])
        labels.append(label)
        relevant.append(gallery_labels[label] - in_itself)
    return retrieval_scores(ranked, labels, relevant, ks)


def _pair_scores(points: Sequence[StoredPoint]) -> tuple[list[float], list[float]]:
    """Cosine similarity of every pair: same label (duplicates) and different labels."""
    vectors = np.asarray([point.vector for point in points], dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    duplicate: list[float] = []
    distinct: list[float] = []
    for i, j in itertools.combinations(range(len(points)), 2):
        same = points[i].payload[LABEL] == points[j].payload[LABEL]
        (duplicate if same else distinct).append(float(similarity[i, j]))
    return duplicate, distinct
