"""The ingestion pipeline as plain functions: bytes -> tensor -> vectors -> stored points.

Callers (bulk ingestion, Celery tasks, the API) decide where bytes come from and how
failures are reported; this module only turns good images into stored points and bad ones
into ``InvalidImage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.embedder import OnnxEmbedder
from ingest.images import load_for_model, sha256_hex
from ingest.store.base import VectorStore
from schemas.models import ModelManifest, Preprocessing
from schemas.points import NewPoint
from schemas.settings import ImageLimits


@dataclass(frozen=True)
class ImageJob:
    """One image of one item, with the metadata that becomes its payload."""

    item_id: str
    source_uri: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedImage:
    """A decoded, preprocessed image ready for a batch."""

    job: ImageJob
    image_sha256: str
    tensor: npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelRuntime:
    """A model's manifest with its loaded embedder: what a pipeline needs per model."""

    manifest: ModelManifest
    embedder: OnnxEmbedder

    @property
    def preprocessing(self) -> Preprocessing:
        """How this model wants its input prepared."""
        return self.manifest.spec.preprocessing


def prepare_image(
    job: ImageJob,
    data: bytes,
    preprocessing: Preprocessing,
    limits: ImageLimits,
    *,
    jpeg_draft: bool = True,
) -> PreparedImage:
    """Decode and preprocess one image; raises ``InvalidImage`` for bad input."""
    tensor = load_for_model(data, preprocessing, limits, jpeg_draft=jpeg_draft)
    return PreparedImage(job=job, image_sha256=sha256_hex(data), tensor=tensor)


def embed_prepared(
    runtime: ModelRuntime, prepared: Sequence[PreparedImage]
) -> npt.NDArray[np.float32]:
    """One batched inference over already prepared images."""
    if not prepared:
        return np.zeros((0, runtime.embedder.dimension), dtype=np.float32)
    return runtime.embedder.embed(np.stack([image.tensor for image in prepared]))


def store_vectors(
    store: VectorStore,
    manifest: ModelManifest,
    prepared: Sequence[PreparedImage],
    vectors: npt.NDArray[np.float32],
) -> list[str]:
    """Upsert one point per prepared image; returns the point ids."""
    points = [
        NewPoint(
            item_id=image.job.item_id,
            image_sha256=image.image_sha256,
            vector=vector.tolist(),
            source_uri=image.job.source_uri,
            metadata=image.job.metadata,
        )
        for image, vector in zip(prepared, vectors, strict=True)
    ]
    return store.upsert(manifest, points)


def embed_and_store(
    store: VectorStore, runtime: ModelRuntime, prepared: Sequence[PreparedImage]
) -> list[str]:
    """Embed a batch with one model and store it in that model's collection."""
    return store_vectors(store, runtime.manifest, prepared, embed_prepared(runtime, prepared))
