"""Ingest-time thumbnails: making them, storing them by content, and ingestion writing them."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from qdrant_client import QdrantClient

from ingest.images.decode import DRAFT_MARGIN, decode_image, load_for_model
from ingest.images.sources import SourceResolver
from ingest.images.thumbnails import (
    ThumbnailStore,
    is_thumbnail_key,
    make_thumbnail,
    thumbnail_dimensions,
)
from ingest.ingestion import pipeline
from ingest.ingestion.bulk import BulkIngestor, folder_sources
from ingest.ingestion.handler import EventHandler, Outcome
from ingest.ingestion.pipeline import (
    ImageJob,
    prepare_image,
    prepare_images,
    store_thumbnail,
)
from ingest.models.registry import ModelRegistry
from ingest.models.runtime import ModelRuntime, load_runtime
from ingest.store.qdrant import QdrantStore
from schemas.events import UploadEvent
from schemas.models import Preprocessing
from schemas.points import StoredPoint
from schemas.settings import Settings
from tests.ingest.catalog_samples import GOOD_FOLDER_ITEMS, write_photo_folder
from tests.ingest.image_samples import (
    RED,
    encode,
    exif_with_orientation,
    half_transparent_rgba,
    picture,
    textured_photo,
)
from tests.support import TEST_MODEL_ID

SECOND_MODEL = "thumb-copy"
WHITE = (255, 255, 255)


def opened(data: bytes) -> Image.Image:
    """The thumbnail bytes decoded, checked to be a WebP file."""
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    image.load()
    return image


def assert_close(colour: object, expected: tuple[int, int, int], tolerance: int) -> None:
    assert isinstance(colour, tuple), colour
    assert all(abs(a - b) <= tolerance for a, b in zip(colour[:3], expected, strict=True)), colour


def job(item_id: str = "a") -> ImageJob:
    return ImageJob(item_id=item_id, source_uri=f"file:///shop/{item_id}.jpg")


def unwritable(tmp_path: Path) -> ThumbnailStore:
    """A store whose root is a regular file: every write fails with an OSError."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    return ThumbnailStore(blocker / "thumbnails")


def all_points(store: QdrantStore, model_id: str = TEST_MODEL_ID) -> list[StoredPoint]:
    points, next_page = store.scroll(model_id, limit=1000)
    assert next_page is None
    return points


# --- making thumbnails ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1600, 1200), (256, 192)),  # landscape
        ((300, 900), (85, 256)),  # portrait
        ((512, 512), (256, 256)),  # square
        ((5000, 260), (256, 13)),  # a banner
        ((96, 72), (96, 72)),  # already small: never enlarged
    ],
)
def test_thumbnail_keeps_the_aspect_ratio_with_the_longest_side_at_most_size(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert thumbnail_dimensions(*size, 256) == expected
    thumbnail = opened(make_thumbnail(picture(*size)))
    assert thumbnail.size == expected
    assert thumbnail.mode == "RGB"


def test_thumbnail_size_and_quality_are_parameters() -> None:
    image = textured_photo()
    small = make_thumbnail(image, size=64)
    assert opened(small).size == (64, 48)
    assert len(make_thumbnail(image, size=64, quality=20)) < len(small)
    with pytest.raises(ValueError, match="size"):
        make_thumbnail(image, size=0)
    with pytest.raises(ValueError, match="quality"):
        make_thumbnail(image, quality=101)


def test_thumbnail_shows_the_picture() -> None:
    thumbnail = opened(make_thumbnail(picture(640, 480), size=128))
    # The red top-left corner and the red disc survive the shrink and the lossy encoding.
    assert_close(thumbnail.getpixel((3, 3)), RED, 40)
    assert_close(thumbnail.getpixel((32, 42)), RED, 40)


def test_transparent_pixels_are_white_as_the_model_sees_them() -> None:
    source = half_transparent_rgba(640, 480)
    from_decode = decode_image(encode(source, "PNG"), Settings().images)
    for image in (from_decode, source):  # decoded upload, or RGBA handed in directly
        thumbnail = opened(make_thumbnail(image))
        assert thumbnail.mode == "RGB"  # no alpha channel: white, not transparent black
        assert thumbnail.size == (256, 192)
        assert_close(thumbnail.getpixel((20, 96)), WHITE, 8)
        assert_close(thumbnail.getpixel((236, 96)), RED, 40)


def test_thumbnail_is_upright_and_carries_no_metadata() -> None:
    # Orientation 6: stored landscape, shown portrait. EXIF (GPS in real photos) must not leak.
    data = encode(picture(640, 480), "JPEG", exif=exif_with_orientation(6))
    thumbnail = opened(make_thumbnail(decode_image(data, Settings().images)))
    assert thumbnail.size == (192, 256)
    assert not thumbnail.getexif()
    assert "exif" not in thumbnail.info
    assert "icc_profile" not in thumbnail.info


def test_same_picture_gives_the_same_bytes() -> None:
    assert make_thumbnail(picture()) == make_thumbnail(picture())
    assert make_thumbnail(picture()) != make_thumbnail(picture(321, 240))


# --- the content-addressed store ------------------------------------------------------------


def test_store_names_thumbnails_by_the_sha256_of_their_bytes(tmp_path: Path) -> None:
    thumbnails = ThumbnailStore(tmp_path / "thumbs")
    data = make_thumbnail(picture())

    key = thumbnails.put(data)

    assert key == hashlib.sha256(data).hexdigest()
    assert is_thumbnail_key(key)
    assert thumbnails.path_for(key) == tmp_path / "thumbs" / key[:2] / key[2:4] / f"{key}.webp"
    assert thumbnails.get(key) == data
    # Storing it again (another item with the same picture) keeps one file.
    assert thumbnails.put(data) == key
    other = thumbnails.put(make_thumbnail(picture(200, 100)))
    assert other != key
    files = sorted(p.name for p in (tmp_path / "thumbs").rglob("*") if p.is_file())
    assert files == sorted([f"{key}.webp", f"{other}.webp"])  # no temp files left behind


@pytest.mark.parametrize(
    "key",
    [
        "",
        "0" * 63,
        "0" * 65,
        "A" * 64,  # upper case: one thumbnail, one spelling
        "g" * 64,
        "../../../../etc/passwd",
        "../" + "0" * 61,
        "0" * 32 + "/" + "0" * 31,
        "0" * 64 + "\n",
        "0" * 64 + ".webp",
    ],
)
def test_malformed_keys_name_nothing(tmp_path: Path, key: str) -> None:
    thumbnails = ThumbnailStore(tmp_path / "thumbs")
    assert not is_thumbnail_key(key)
    assert thumbnails.get(key) is None
    with pytest.raises(ValueError, match="not a thumbnail key"):
        thumbnails.path_for(key)


def test_unknown_and_corrupt_thumbnails_are_not_served(tmp_path: Path) -> None:
    thumbnails = ThumbnailStore(tmp_path / "thumbs")
    data = make_thumbnail(picture())
    assert thumbnails.get(hashlib.sha256(data).hexdigest()) is None

    key = thumbnails.put(data)
    thumbnails.path_for(key).write_bytes(b"other bytes")
    assert thumbnails.get(key) is None
    assert thumbnails.put(data) == key  # storing it again heals it
    assert thumbnails.get(key) == data

    with pytest.raises(ValueError, match="empty"):
        thumbnails.put(b"")


# --- one decode for the models and the thumbnail --------------------------------------------


def test_one_decode_makes_every_model_input_and_the_thumbnail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int | None] = []
    real_decode = decode_image

    def counting_decode(data: bytes, limits: Any, *, draft_size: int | None = None) -> Any:
        calls.append(draft_size)
        return real_decode(data, limits, draft_size=draft_size)

    monkeypatch.setattr(pipeline, "decode_image", counting_decode)
    recipes = [Preprocessing(), Preprocessing(input_size=112, mean=(0.5, 0.5, 0.5))]
    data = encode(textured_photo(), "JPEG", quality=90)
    limits = Settings().images

    images = prepare_images(job(), data, recipes, limits, thumbnail_size=256)

    # Once, drafted for the largest of model inputs and thumbnail, with its margin.
    assert calls == [DRAFT_MARGIN * 256]
    assert [images[recipe].tensor.shape for recipe in recipes] == [(3, 224, 224), (3, 112, 112)]
    thumbnail = images[recipes[0]].thumbnail
    assert thumbnail is not None
    assert all(image.thumbnail is thumbnail for image in images.values())
    assert opened(thumbnail).size == (256, 192)
    # The model input is what a query with the same image gets (same draft, same tensor).
    monkeypatch.setattr(pipeline, "decode_image", real_decode)
    np.testing.assert_array_equal(
        images[recipes[0]].tensor, load_for_model(data, recipes[0], limits, thumbnail_size=256)
    )


def test_jpeg_draft_is_large_enough_for_the_thumbnail() -> None:
    # A 1600x1200 JPEG drafted for a 224 input alone decodes at 400x300: too small for 512.
    data = encode(textured_photo(), "JPEG", quality=90)
    limits = Settings().images
    drafted = prepare_image(job(), data, Preprocessing(), limits, thumbnail_size=512)
    assert drafted.thumbnail is not None
    assert opened(drafted.thumbnail).size == (512, 384)
    assert decode_image(data, limits, draft_size=224).size == (400, 300)


def test_no_thumbnail_unless_asked_for() -> None:
    prepared = prepare_image(job(), encode(picture(), "PNG"), Preprocessing(), Settings().images)
    assert prepared.thumbnail is None
    assert prepared.thumbnail_key is None


def test_store_thumbnail_keys_every_model_input(tmp_path: Path) -> None:
    thumbnails = ThumbnailStore(tmp_path / "thumbs")
    recipes = [Preprocessing(), Preprocessing(input_size=112)]
    data = encode(picture(), "PNG")
    images = prepare_images(job(), data, recipes, Settings().images, thumbnail_size=128)

    stored = store_thumbnail(thumbnails, images)

    keys = {image.thumbnail_key for image in stored.values()}
    assert len(keys) == 1
    (key,) = keys
    assert key is not None
    assert thumbnails.get(key) == images[recipes[0]].thumbnail


def test_a_thumbnail_that_cannot_be_written_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images = prepare_images(
        job("sku-1"),
        encode(picture(), "PNG"),
        [Preprocessing()],
        Settings().images,
        thumbnail_size=64,
    )
    with caplog.at_level(logging.WARNING, logger="ingest.ingestion.pipeline"):
        stored = store_thumbnail(unwritable(tmp_path), images)
    assert [image.thumbnail_key for image in stored.values()] == [None]
    assert "thumbnail of sku-1" in caplog.text


# --- bulk ingestion and queue events write them ---------------------------------------------


@pytest.fixture
def store() -> Iterator[QdrantStore]:
    opened_store = QdrantStore(QdrantClient(location=":memory:"))
    yield opened_store
    opened_store.close()


@pytest.fixture
def runtimes(settings: Settings, registry: ModelRegistry) -> list[ModelRuntime]:
    """The test model and a copy of it under another id: two collections."""
    registry.register(registry.model_path(TEST_MODEL_ID), SECOND_MODEL, random_weights=True)
    return [load_runtime(settings, TEST_MODEL_ID), load_runtime(settings, SECOND_MODEL)]


def assert_thumbnails_in_payloads(
    store: QdrantStore, thumbnails: ThumbnailStore, expected: int
) -> None:
    """Every point has a served thumbnail key; each image has its own, the same per model."""
    keys_by_model = {}
    for model_id in (TEST_MODEL_ID, SECOND_MODEL):
        points = all_points(store, model_id)
        assert len(points) == expected
        keys_by_model[model_id] = {p.item_id: p.payload["thumbnail_key"] for p in points}
    keys = keys_by_model[TEST_MODEL_ID]
    assert keys == keys_by_model[SECOND_MODEL]
    assert len(set(keys.values())) == expected
    for key in keys.values():
        data = thumbnails.get(key)
        assert data is not None
        assert max(opened(data).size) <= 256


def test_bulk_ingestion_stores_thumbnails_and_their_keys(
    store: QdrantStore, runtimes: list[ModelRuntime], settings: Settings, tmp_path: Path
) -> None:
    thumbnails = ThumbnailStore(settings.resolved_thumbnail_dir())
    ingestor = BulkIngestor(store, runtimes, settings.images, batch_size=2, thumbnails=thumbnails)

    summary = ingestor.run(folder_sources(write_photo_folder(tmp_path / "photos")), progress=False)

    assert (summary.ingested, summary.failed) == (len(GOOD_FOLDER_ITEMS), 3)
    assert_thumbnails_in_payloads(store, thumbnails, len(GOOD_FOLDER_ITEMS))
    # Nothing for the bad images: one file per good image.
    files = [p for p in settings.resolved_thumbnail_dir().rglob("*.webp") if p.is_file()]
    assert len(files) == len(GOOD_FOLDER_ITEMS)


def test_bulk_ingestion_without_a_thumbnail_store_makes_none(
    store: QdrantStore, runtimes: list[ModelRuntime], settings: Settings, tmp_path: Path
) -> None:
    ingestor = BulkIngestor(store, runtimes[:1], settings.images)
    ingestor.run(folder_sources(write_photo_folder(tmp_path / "photos")), progress=False)
    assert {p.payload["thumbnail_key"] for p in all_points(store)} == {None}


def test_bulk_ingestion_keeps_embeddings_when_thumbnails_cannot_be_written(
    store: QdrantStore,
    runtimes: list[ModelRuntime],
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ingestor = BulkIngestor(store, runtimes[:1], settings.images, thumbnails=unwritable(tmp_path))
    with caplog.at_level(logging.WARNING, logger="ingest.ingestion.pipeline"):
        summary = ingestor.run(
            folder_sources(write_photo_folder(tmp_path / "photos")), progress=False
        )
    assert summary.ingested == len(GOOD_FOLDER_ITEMS)
    assert {p.payload["thumbnail_key"] for p in all_points(store)} == {None}
    assert caplog.text.count("not stored") == len(GOOD_FOLDER_ITEMS)


@pytest.fixture
def two_model_settings(settings: Settings, runtimes: list[ModelRuntime]) -> Settings:
    return settings.model_copy(update={"enabled_models": [TEST_MODEL_ID, SECOND_MODEL]})


def handler_for(settings: Settings, store: QdrantStore, **kwargs: Any) -> EventHandler:
    return EventHandler(
        settings,
        store,
        SourceResolver(settings),
        functools.partial(load_runtime, settings),
        **kwargs,
    )


def test_upload_events_store_thumbnails_and_their_keys(
    store: QdrantStore, two_model_settings: Settings
) -> None:
    handler = handler_for(two_model_settings, store)
    blobs = handler.resolver.blobs
    events = [
        UploadEvent(item_id=f"item-{i}", image_uri=blobs.put(encode(picture(320 + i), "JPEG")))
        for i in range(3)
    ]
    bad = UploadEvent(item_id="bad", image_uri=blobs.put(b"not a picture"))

    results = handler.uploads([*events, bad])

    assert [r.outcome for r in results] == [Outcome.DONE] * 3 + [Outcome.FAILED]
    # By default the handler writes where the API serves from: the settings' thumbnail dir.
    assert handler.thumbnails.root == two_model_settings.resolved_thumbnail_dir()
    assert_thumbnails_in_payloads(store, handler.thumbnails, 3)


def test_upload_events_succeed_without_thumbnails_when_they_cannot_be_written(
    store: QdrantStore, two_model_settings: Settings, tmp_path: Path
) -> None:
    handler = handler_for(two_model_settings, store, thumbnails=unwritable(tmp_path))
    event = UploadEvent(
        item_id="item", image_uri=handler.resolver.blobs.put(encode(picture(), "JPEG"))
    )

    (result,) = handler.uploads([event])

    assert result.outcome is Outcome.DONE
    for model_id in (TEST_MODEL_ID, SECOND_MODEL):
        (point,) = all_points(store, model_id)
        assert point.payload["thumbnail_key"] is None
