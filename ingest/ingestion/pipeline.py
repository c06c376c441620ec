"""The ingestion pipeline as plain functions: bytes -> tensor -> vectors -> stored points.

Callers (bulk ingestion, Celery tasks, the API) decide where bytes come from and how
failures are reported; this module only turns good images into stored points and bad ones
into ``InvalidImage``.

Thumbnails are a preview, not the product: one that cannot be made or written is logged and
its point stored without a ``thumbnail_key``, never lost, failed or retried because of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from ingest.images.decode import decode_image, draft_size_for, preprocess, sha256_hex
from ingest.images.thumbnails import ThumbnailStore, make_thumbnail
from ingest.models.runtime import ModelRuntime
from ingest.store.base import VectorStore
from schemas.models import ModelManifest, Preprocessing
from schemas.points import NewPoint
from schemas.settings import ImageLimits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageJob:
    """One image of one item, with the metadata that becomes its payload."""

    item_id: str
    source_uri: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedImage:
    """A decoded, preprocessed image ready for a batch, with its thumbnail if one was made."""

    job: ImageJob
    image_sha256: str
    tensor: npt.NDArray[np.float32]
    thumbnail: bytes | None = None  # WebP from the same decode as ``tensor``
    thumbnail_key: str | None = None  # set once the thumbnail is stored


def prepare_images(
    job: ImageJob,
    data: bytes,
    recipes: Iterable[Preprocessing],
    limits: ImageLimits,
    *,
    jpeg_draft: bool = True,
    thumbnail_size: int | None = None,
) -> dict[Preprocessing, PreparedImage]:
    """Decode once, then make each recipe's input (and a thumbnail); ``InvalidImage`` if bad."""
    wanted = list(dict.fromkeys(recipes))
    # The JPEG draft keeps both sides >= every model's input and the thumbnail's size.
    draft = draft_size_for(wanted, thumbnail_size) if jpeg_draft else None
    image = decode_image(data, limits, draft_size=draft)
    digest = sha256_hex(data)
    thumbnail = None if thumbnail_size is None else _thumbnail(job, image, thumbnail_size)
    return {
        recipe: PreparedImage(
            job=job, image_sha256=digest, tensor=preprocess(image, recipe), thumbnail=thumbnail
        )
        for recipe in wanted
    }


def prepare_image(
    job: ImageJob,
    data: bytes,
    preprocessing: Preprocessing,
    limits: ImageLimits,
    *,
    jpeg_draft: bool = True,
    thumbnail_size: int | None = None,
) -> PreparedImage:
    """Decode and preprocess one image; raises ``InvalidImage`` for bad input."""
    return prepare_images(
        job, data, [preprocessing], limits, jpeg_draft=jpeg_draft, thumbnail_size=thumbnail_size
    )[preprocessing]


def _thumbnail(job: ImageJob, image: Image.Image, size: int) -> bytes | None:
    try:
        return make_thumbnail(image, size=size)
    except (OSError, ValueError) as error:  # the WebP encoder's failures
        logger.warning("no thumbnail for %s (%s): %s", job.item_id, job.source_uri, error)
        return None


def store_thumbnail(
    thumbnails: ThumbnailStore, images: Mapping[Preprocessing, PreparedImage]
) -> dict[Preprocessing, PreparedImage]:
    """Store the thumbnail the images of one picture share; each gets its key if written."""
    first = next(iter(images.values()), None)
    if first is None or first.thumbnail is None:
        return dict(images)
    try:
        key = thumbnails.put(first.thumbnail)
    except OSError as error:
        # Disk full, permissions, a read-only mount: the point is stored without a thumbnail
        # rather than dropped or retried over a preview.
        logger.warning(
            "thumbnail of %s (%s) not stored: %s", first.job.item_id, first.job.source_uri, error
        )
        return dict(images)
    return {recipe: replace(image, thumbnail_key=key) for recipe, image in images.items()}


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
            thumbnail_key=image.thumbnail_key,
        )
        for image, vector in zip(prepared, vectors, strict=True)
    ]
    return store.upsert(manifest, points)


def embed_and_store(
    store: VectorStore, runtime: ModelRuntime, prepared: Sequence[PreparedImage]
) -> list[str]:
    """Embed a batch with one model and store it in that model's collection."""
    return store_vectors(store, runtime.manifest, prepared, embed_prepared(runtime, prepared))
