"""The query service over a real catalog: embedded with the test model, stored on local disk."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ingest.errors import ItemNotFound
from ingest.ingestion.bulk import BulkIngestor, catalog_sources
from ingest.models.runtime import load_runtime
from ingest.store.base import VectorStore
from ingest.store.current import open_store
from schemas.points import MatchCondition, PayloadFilter, RangeCondition, ScoredPoint
from schemas.queries import SimilarityQuery
from schemas.settings import Settings
from search_api.queries.similar import embed_query_image, run_query
from tests.ingest.catalog_samples import (
    CATALOG_SIZE,
    catalog_row,
    write_csv,
    write_picture,
)
from tests.support import TEST_MODEL_ID

TOTAL_POINTS = CATALOG_SIZE + 1  # sku-00 has a second image


@dataclass(frozen=True)
class Catalog:
    store: VectorStore
    images: Path


@pytest.fixture
def catalog(settings: Settings, tmp_path: Path) -> Iterator[Catalog]:
    """The standard test catalog, plus a second (different) image of sku-00."""
    images = tmp_path / "images"
    rows = [catalog_row(i) for i in range(CATALOG_SIZE)]
    rows.append({**catalog_row(0), "image": "00-back.jpg"})
    for index, row in enumerate(rows):
        write_picture(images / row["image"], index)
    csv_path = write_csv(tmp_path / "catalog.csv", rows)
    store = open_store(settings)
    runtime = load_runtime(settings, TEST_MODEL_ID)
    summary = BulkIngestor(store, [runtime], settings.images).run(
        catalog_sources(csv_path, images), progress=False
    )
    assert (summary.ingested, summary.failed) == (TOTAL_POINTS, 0)
    yield Catalog(store=store, images=images)
    store.close()


def query(**fields: object) -> SimilarityQuery:
    return SimilarityQuery.model_validate({"model_id": TEST_MODEL_ID, "limit": 100, **fields})


def assert_descending(hits: list[ScoredPoint]) -> None:
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_image_query_finds_the_same_image_first(settings: Settings, catalog: Catalog) -> None:
    image = (catalog.images / catalog_row(5)["image"]).read_bytes()

    hits = run_query(settings, catalog.store, query(), image=image)

    assert hits[0].item_id == "sku-05"
    assert hits[0].score > 0.999
    assert hits[1].score < 0.99
    assert len(hits) == TOTAL_POINTS
    assert_descending(hits)


def test_vector_query_equals_the_image_query(settings: Settings, catalog: Catalog) -> None:
    image = (catalog.images / catalog_row(7)["image"]).read_bytes()
    vector = embed_query_image(settings, TEST_MODEL_ID, image)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)

    by_vector = run_query(settings, catalog.store, query(vector=vector, limit=5))
    by_image = run_query(settings, catalog.store, query(limit=5), image=image)

    assert [h.id for h in by_vector] == [h.id for h in by_image]


def test_item_query_leaves_out_every_image_of_the_item(
    settings: Settings, catalog: Catalog
) -> None:
    hits = run_query(settings, catalog.store, query(item_id="sku-00"))

    assert "sku-00" not in {hit.item_id for hit in hits}
    assert len(hits) == TOTAL_POINTS - 2
    assert_descending(hits)


def test_item_query_keeps_the_callers_conditions(settings: Settings, catalog: Catalog) -> None:
    callers_filter = PayloadFilter(
        must=[MatchCondition(key="category", value="shoes")],
        must_not=[MatchCondition(key="brand", value="acme")],
    )

    hits = run_query(settings, catalog.store, query(item_id="sku-02", filter=callers_filter))

    # Shoes are the even rows, acme every third: 2, 4, 8, 10 remain; 2 is the query item.
    assert sorted(hit.item_id for hit in hits) == ["sku-04", "sku-08", "sku-10"]


def test_range_filter_includes_its_bound(settings: Settings, catalog: Catalog) -> None:
    cheap = PayloadFilter(must=[RangeCondition(key="price", lte=10)])

    hits = run_query(settings, catalog.store, query(item_id="sku-01", filter=cheap))

    prices = {hit.item_id: hit.payload["price"] for hit in hits}
    assert prices == {"sku-00": 5, "sku-02": 8, "sku-04": 9.99, "sku-06": 10, "sku-08": 3.5}
    assert len(hits) == 6  # sku-00 has two images


def test_group_by_returns_the_best_hit_of_each_group(settings: Settings, catalog: Catalog) -> None:
    image = (catalog.images / catalog_row(3)["image"]).read_bytes()

    grouped = run_query(settings, catalog.store, query(group_by="product_id"), image=image)
    ungrouped = run_query(settings, catalog.store, query(), image=image)

    products = [hit.payload["product_id"] for hit in grouped]
    assert sorted(products) == [f"p{i}" for i in range(CATALOG_SIZE // 2)]
    assert grouped[0].item_id == "sku-03"
    best_per_product: dict[str, ScoredPoint] = {}
    for hit in ungrouped:  # best first
        best_per_product.setdefault(hit.payload["product_id"], hit)
    assert [hit.id for hit in grouped] == [best_per_product[p].id for p in products]
    assert_descending(grouped)


def test_group_by_limit_counts_groups(settings: Settings, catalog: Catalog) -> None:
    hits = run_query(settings, catalog.store, query(item_id="sku-04", group_by="brand", limit=2))
    assert len(hits) == 2
    assert len({hit.payload["brand"] for hit in hits}) == 2


def test_score_threshold_cuts_the_ranking(settings: Settings, catalog: Catalog) -> None:
    image = (catalog.images / catalog_row(9)["image"]).read_bytes()
    everything = run_query(settings, catalog.store, query(), image=image)
    threshold = (everything[2].score + everything[3].score) / 2

    hits = run_query(settings, catalog.store, query(score_threshold=threshold), image=image)

    assert [hit.id for hit in hits] == [hit.id for hit in everything[:3]]


def test_unknown_item_is_item_not_found(settings: Settings, catalog: Catalog) -> None:
    with pytest.raises(ItemNotFound, match="no item 'sku-99'"):
        run_query(settings, catalog.store, query(item_id="sku-99"))


def test_query_without_image_item_or_vector_is_refused(
    settings: Settings, catalog: Catalog
) -> None:
    with pytest.raises(ValueError, match="needs an image, an item id or a vector"):
        run_query(settings, catalog.store, query())
