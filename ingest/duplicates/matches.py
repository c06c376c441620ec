"""Near-duplicates of one image or one stored item, above the model's threshold."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from ingest.duplicates.groups import NO_HIDDEN, Pair, partners_of
from ingest.store.base import VectorStore
from schemas.points import MatchCondition, PayloadFilter, ScoredPoint

ITEM_IMAGES_LIMIT = 100


def near_duplicates(
    store: VectorStore,
    model_id: str,
    *,
    vector: Sequence[float] | None = None,
    point_id: str | None = None,
    threshold: float,
    limit: int = 100,
    exclude_item_id: str | None = None,
    hidden: AbstractSet[Pair] = NO_HIDDEN,
) -> list[ScoredPoint]:
    """Images above the threshold for a vector or a stored point (minus its dismissed pairs)."""
    query_filter = None
    if exclude_item_id is not None:
        query_filter = PayloadFilter(
            must_not=[MatchCondition(key="item_id", value=exclude_item_id)]
        )
    dismissed = partners_of(hidden).get(point_id, set()) if point_id is not None else set()
    # Dismissed partners can only take places in the answer: ask for that many more.
    hits = store.query(
        model_id,
        vector=vector,
        point_id=point_id,
        filter=query_filter,
        limit=limit + len(dismissed),
        score_threshold=threshold,
    )
    return [hit for hit in hits if hit.id not in dismissed][:limit]


def item_near_duplicates(
    store: VectorStore,
    model_id: str,
    item_id: str,
    *,
    threshold: float,
    limit: int = 100,
    hidden: AbstractSet[Pair] = NO_HIDDEN,
) -> list[ScoredPoint]:
    """Images of other items above the threshold for any image of this item, best first."""
    only_item = PayloadFilter(must=[MatchCondition(key="item_id", value=item_id)])
    images, _ = store.scroll(model_id, filter=only_item, limit=ITEM_IMAGES_LIMIT)
    best: dict[str, ScoredPoint] = {}
    for image in images:
        for hit in near_duplicates(
            store,
            model_id,
            point_id=image.id,
            threshold=threshold,
            limit=limit,
            exclude_item_id=item_id,
            hidden=hidden,
        ):
            if hit.id not in best or hit.score > best[hit.id].score:
                best[hit.id] = hit
    return sorted(best.values(), key=lambda hit: (-hit.score, hit.id))[:limit]
