"""The ingestion pipeline functions with the real test model and a real local-mode store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient

from ingest.errors import InvalidImage, InvalidImageReason
from ingest.images.decode import load_for_model
from ingest.ingestion.pipeline import (
    ImageJob,
    embed_and_store,
    embed_prepared,
    prepare_image,
    store_vectors,
)
from ingest.models.runtime import ModelRuntime, load_runtime
from ingest.store.base import point_id
from ingest.store.qdrant import QdrantStore
from schemas.settings import Settings
from tests.ingest.catalog_samples import distinct_picture
from tests.ingest.image_samples import encode, textured_photo
from tests.support import TEST_MODEL_ID


@pytest.fixture
def runtime(settings: Settings) -> ModelRuntime:
    return load_runtime(settings, TEST_MODEL_ID)


@pytest.fixture
def store() -> Iterator[QdrantStore]:
    opened = QdrantStore(QdrantClient(location=":memory:"))
    yield opened
    opened.close()


def jpeg(index: int) -> bytes:
    return encode(distinct_picture(index), "JPEG", quality=90)


def job(item_id: str, **metadata: object) -> ImageJob:
    return ImageJob(item_id=item_id, source_uri=f"file:///shop/{item_id}.jpg", metadata=metadata)


def test_prepare_image_keeps_the_bytes_identity_and_makes_model_input(
    runtime: ModelRuntime, settings: Settings
) -> None:
    data = jpeg(0)
    prepared = prepare_image(job("a"), data, runtime.preprocessing, settings.images)
    assert prepared.image_sha256 == hashlib.sha256(data).hexdigest()
    assert prepared.tensor.shape == (3, 224, 224)
    assert prepared.tensor.dtype == np.float32
    np.testing.assert_array_equal(
        prepared.tensor, load_for_model(data, runtime.preprocessing, settings.images)
    )


def test_prepare_image_can_decode_large_jpegs_at_full_size(
    runtime: ModelRuntime, settings: Settings
) -> None:
    data = encode(textured_photo(3200, 2400), "JPEG", quality=92)  # large enough to draft
    drafted = prepare_image(job("a"), data, runtime.preprocessing, settings.images)
    full = prepare_image(job("a"), data, runtime.preprocessing, settings.images, jpeg_draft=False)
    # Both are the same picture; drafting (DCT scaling) only changes the resampling path.
    assert not np.array_equal(drafted.tensor, full.tensor)
    assert float(np.abs(drafted.tensor - full.tensor).mean()) < 0.1
    assert drafted.image_sha256 == full.image_sha256


def test_prepare_image_refuses_bad_bytes_with_a_reason(
    runtime: ModelRuntime, settings: Settings
) -> None:
    with pytest.raises(InvalidImage) as caught:
        prepare_image(job("a"), b"GIF? no, a text file", runtime.preprocessing, settings.images)
    assert caught.value.reason is InvalidImageReason.NOT_AN_IMAGE


def test_embed_prepared_of_nothing_is_an_empty_matrix(runtime: ModelRuntime) -> None:
    vectors = embed_prepared(runtime, [])
    assert vectors.shape == (0, 96)
    assert vectors.dtype == np.float32


def test_embed_and_store_writes_one_point_per_image(
    runtime: ModelRuntime, store: QdrantStore, settings: Settings
) -> None:
    images = [
        prepare_image(
            job(f"item-{i}", brand="acme", price=9.5),
            jpeg(i),
            runtime.preprocessing,
            settings.images,
        )
        for i in range(3)
    ]

    ids = embed_and_store(store, runtime, images)

    assert ids == [point_id(image.job.item_id, image.image_sha256) for image in images]
    stored = store.retrieve(TEST_MODEL_ID, ids, with_vectors=True)
    expected = runtime.embedder.embed(np.stack([image.tensor for image in images]))
    for point, image, vector in zip(stored, images, expected, strict=True):
        assert point.item_id == image.job.item_id
        assert point.payload["brand"] == "acme"
        assert point.payload["price"] == 9.5
        assert point.payload["image_sha256"] == image.image_sha256
        assert point.payload["source_uri"] == image.job.source_uri
        assert point.payload["model_fingerprint"] == runtime.manifest.fingerprint
        assert point.vector is not None
        np.testing.assert_allclose(point.vector, vector, atol=1e-6)

    # The same images again overwrite their points instead of adding new ones.
    assert embed_and_store(store, runtime, images) == ids
    assert store.count(TEST_MODEL_ID) == 3


def test_store_vectors_refuses_a_vector_count_that_does_not_match(
    runtime: ModelRuntime, store: QdrantStore, settings: Settings
) -> None:
    images = [prepare_image(job("a"), jpeg(0), runtime.preprocessing, settings.images)]
    with pytest.raises(ValueError, match="zip"):
        store_vectors(store, runtime.manifest, images, np.zeros((2, 96), np.float32))
