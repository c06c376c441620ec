"""Synthetic catalogs for the store benchmark: vectors, payloads, point ids and ground truth.

A clustered catalog imitates image embeddings: cluster centres (kinds of product), products
around their centre (cosine about 0.65 between products of one cluster) and about four images
per product around the product (cosine 0.92-0.99 between images of one product, so a 0.95
duplicate threshold finds some pairs and misses others). Brand and category follow the
cluster, loosely, so that filters and facets cut across the vector space as real ones do.
The random catalog (independent unit vectors) is HNSW's worst case: every neighbour is about
as far as any other point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ingest.store.base import point_id
from schemas.models import ModelManifest, ModelSpec
from schemas.points import MatchCondition, NewPoint, PayloadFilter

Vectors = npt.NDArray[np.float32]
Indices = npt.NDArray[np.int64]

DIMENSION = 384  # ViT-S/14's
MODEL_ID = "store-bench-vits14"
BRANDS = tuple(f"brand-{i:02d}" for i in range(40))
CATEGORIES = tuple(f"category-{i}" for i in range(10))
# Per-dimension noise: 384 * sigma^2 is the squared length of the noise vector, and the cosine
# of two noisy copies of one unit vector is about 1 / (1 + 384 * sigma^2).
PRODUCT_SPREAD = 0.0375  # products of one cluster: cosine ~0.65
IMAGE_SPREAD = (0.005, 0.015)  # images of one product: cosine ~0.99 down to ~0.92
MEAN_IMAGES_PER_PRODUCT = 4
TOP_K = 10


def bench_manifest(dimension: int = DIMENSION, model_id: str = MODEL_ID) -> ModelManifest:
    """A manifest for synthetic vectors (no model file behind it, only the dimension)."""
    return ModelManifest(
        spec=ModelSpec(id=model_id, family="custom", dimension=dimension),
        sha256="5b" * 32,
        source="bench: synthetic vectors",
    )


def normalised(vectors: Vectors) -> Vectors:
    """Rows scaled to unit length, float32 (cosine = dot product)."""
    vectors = vectors.astype(np.float32, copy=False)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


@dataclass(frozen=True)
class Catalog:
    """Stored points (``vectors`` and their payload columns) and held-out query vectors."""

    name: str
    vectors: Vectors
    brand: Indices
    category: Indices
    product: Indices
    queries: Vectors  # drawn like the stored vectors, never stored

    @property
    def size(self) -> int:
        """How many points the catalog stores."""
        return int(self.vectors.shape[0])

    def item_id(self, index: int) -> str:
        """The item id of the ``index``-th point."""
        return f"item-{index:07d}"

    def image_sha256(self, index: int) -> str:
        """A stand-in image digest, unique per point."""
        return f"{index:064x}"

    def point_ids(self) -> list[str]:
        """Every point's id, as the store derives it (UUIDv5 of item id and image digest)."""
        return [point_id(self.item_id(i), self.image_sha256(i)) for i in range(self.size)]

    def new_points(self, start: int, stop: int) -> list[NewPoint]:
        """Points ``start`` to ``stop`` as the ingestion pipeline hands them to ``upsert``."""
        return [
            NewPoint(
                item_id=self.item_id(i),
                image_sha256=self.image_sha256(i),
                vector=self.vectors[i].tolist(),
                source_uri=f"bench://synthetic/{i}",
                thumbnail_key=f"thumbs/{i}.webp",
                metadata={
                    "brand": BRANDS[self.brand[i]],
                    "category": CATEGORIES[self.category[i]],
                    "product_id": f"p{self.product[i]:07d}",
                },
            )
            for i in range(start, stop)
        ]

    def batches(self, size: int) -> Iterator[list[NewPoint]]:
        """Every point, ``size`` at a time (built on demand: 100k NewPoints would take GBs)."""
        for start in range(0, self.size, size):
            yield self.new_points(start, min(start + size, self.size))


def clustered_catalog(points: int, queries: int, *, clusters: int, seed: int = 0) -> Catalog:
    """Products around cluster centres, images around products (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = normalised(rng.standard_normal((clusters, DIMENSION), dtype=np.float32))
    # Products of 1 to 7 images (4 on average) until every point has one.
    sizes = rng.integers(1, 2 * MEAN_IMAGES_PER_PRODUCT, size=points, endpoint=False)
    product = np.repeat(np.arange(points), sizes)[:points]
    products = int(product[-1]) + 1
    product_cluster = rng.integers(clusters, size=products)
    product_vectors = centres[product_cluster] + PRODUCT_SPREAD * rng.standard_normal(
        (products, DIMENSION), dtype=np.float32
    )
    product_vectors = normalised(product_vectors)
    spread = rng.uniform(*IMAGE_SPREAD, size=products).astype(np.float32)

    def images_of(of_product: Indices) -> Vectors:
        noise = rng.standard_normal((len(of_product), DIMENSION), dtype=np.float32)
        return normalised(product_vectors[of_product] + spread[of_product, None] * noise)

    # A cluster mostly belongs to one brand and one category, with a few strays.
    cluster_brand = rng.integers(len(BRANDS), size=clusters)
    cluster_category = rng.integers(len(CATEGORIES), size=clusters)
    cluster = product_cluster[product]
    brand = np.where(
        rng.random(points) < 0.8, cluster_brand[cluster], rng.integers(len(BRANDS), size=points)
    )
    category = np.where(
        rng.random(points) < 0.8,
        cluster_category[cluster],
        rng.integers(len(CATEGORIES), size=points),
    )
    # A query is a new photo of a product in the catalog: its own images come first, then
    # the rest of its cluster.
    return Catalog(
        name=f"clustered ({clusters:,} clusters)",
        vectors=images_of(product),
        brand=brand.astype(np.int64),
        category=category.astype(np.int64),
        product=product.astype(np.int64),
        queries=images_of(rng.integers(products, size=queries)),
    )


def random_catalog(points: int, queries: int, *, seed: int = 1) -> Catalog:
    """Independent uniformly random unit vectors: the worst case for any ANN index."""
    rng = np.random.default_rng(seed)
    vectors = normalised(rng.standard_normal((points + queries, DIMENSION), dtype=np.float32))
    return Catalog(
        name="random unit vectors",
        vectors=vectors[:points],
        brand=rng.integers(len(BRANDS), size=points).astype(np.int64),
        category=rng.integers(len(CATEGORIES), size=points).astype(np.int64),
        product=(np.arange(points) // MEAN_IMAGES_PER_PRODUCT).astype(np.int64),
        queries=vectors[points:],
    )


def brand_filter(brand: int) -> PayloadFilter:
    """Points of one brand."""
    return PayloadFilter(must=[MatchCondition(key="brand", value=BRANDS[brand])])


def exact_top_k(
    vectors: Vectors,
    queries: Vectors,
    *,
    k: int = TOP_K,
    allowed: npt.NDArray[np.bool_] | None = None,
    chunk: int = 128,
) -> Indices:
    """Indices of each query's ``k`` nearest stored vectors by cosine, best first (numpy)."""
    found = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ vectors.T
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        found[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return found


def recall_at_k(truth: Indices, answers: list[list[int]]) -> float:
    """Mean share of each query's true ``k`` nearest found among its ``k`` answers."""
    k = int(truth.shape[1])
    pairs = zip(truth, answers, strict=True)
    hits = [len(set(row.tolist()) & set(answer[:k])) for row, answer in pairs]
    return sum(hits) / (k * len(hits))


def catalog_of(name: str, vectors: Vectors, *, queries: int, seed: int = 2) -> Catalog:
    """A catalog of given (real) vectors, ``queries`` of them held out as queries."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    stored, held_out = order[queries:], order[:queries]
    return Catalog(
        name=name,
        vectors=np.ascontiguousarray(vectors[stored]),
        brand=rng.integers(len(BRANDS), size=len(stored)).astype(np.int64),
        category=rng.integers(len(CATEGORIES), size=len(stored)).astype(np.int64),
        product=(np.arange(len(stored)) // MEAN_IMAGES_PER_PRODUCT).astype(np.int64),
        queries=np.ascontiguousarray(vectors[held_out]),
    )
