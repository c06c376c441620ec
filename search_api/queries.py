"""The query service: turns a similarity query into store calls (image, item or vector)."""

from __future__ import annotations

from ingest.errors import ItemNotFound
from ingest.images import load_for_model
from ingest.runtime import load_runtime
from ingest.store.base import VectorStore
from schemas.points import MatchCondition, PayloadFilter, ScoredPoint
from schemas.queries import SimilarityQuery
from schemas.settings import Settings


def item_point_id(store: VectorStore, model_id: str, item_id: str) -> str:
    """Id of a stored point of the item (its first image), or ``ItemNotFound``."""
    only_item = PayloadFilter(must=[MatchCondition(key="item_id", value=item_id)])
    points, _ = store.scroll(model_id, filter=only_item, limit=1)
    if not points:
        raise ItemNotFound(f"no item {item_id!r} in the {model_id!r} collection")
    return points[0].id


def embed_query_image(settings: Settings, model_id: str, image: bytes) -> list[float]:
    """Embed an uploaded query image with the collection's model."""
    runtime = load_runtime(settings, model_id)
    tensor = load_for_model(image, runtime.preprocessing, settings.images)
    return [float(x) for x in runtime.embedder.embed(tensor[None])[0]]


def run_query(
    settings: Settings, store: VectorStore, query: SimilarityQuery, image: bytes | None = None
) -> list[ScoredPoint]:
    """Ranked results; with ``group_by``, the best hit of each group in group order."""
    vector = query.vector
    point_id = None
    query_filter = query.filter or PayloadFilter()
    if image is not None:
        vector = embed_query_image(settings, query.model_id, image)
    elif query.item_id is not None:
        point_id = item_point_id(store, query.model_id, query.item_id)
        # The query item's other images are not "similar items": leave the item out entirely.
        query_filter = query_filter.model_copy(
            update={
                "must_not": [
                    *query_filter.must_not,
                    MatchCondition(key="item_id", value=query.item_id),
                ]
            }
        )
    if vector is None and point_id is None:
        raise ValueError("a query needs an image, an item id or a vector")
    if query.group_by:
        groups = store.query_groups(
            query.model_id,
            group_by=query.group_by,
            vector=vector,
            point_id=point_id,
            filter=query_filter,
            limit=query.limit,
            group_size=1,
            score_threshold=query.score_threshold,
        )
        return [group.hits[0] for group in groups if group.hits]
    return store.query(
        query.model_id,
        vector=vector,
        point_id=point_id,
        filter=query_filter,
        limit=query.limit,
        offset=query.offset,
        score_threshold=query.score_threshold,
    )
