"""The query service: similarity, grouped and recommendation queries and facets, as store calls."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.errors import ItemNotFound
from ingest.images.decode import load_for_model
from ingest.models.runtime import load_runtime
from ingest.store.base import VectorStore
from schemas.points import (
    AnyOfCondition,
    Condition,
    MatchCondition,
    PayloadFilter,
    ScoredPoint,
)
from schemas.queries import (
    FacetQuery,
    FacetResult,
    GroupPage,
    GroupQuery,
    RecommendQuery,
    SimilarityQuery,
)
from schemas.settings import Settings

# Groups a cursor may exclude: each page sends them all back to Qdrant as a must-not filter,
# so the bound keeps both the cursor and the filter small (10 full pages of 100 groups).
MAX_CURSOR_GROUPS = 1000
CURSOR_VERSION = 1

GroupKey = str | int


@dataclass(frozen=True)
class _Target:
    """What a query searches from: a vector or a stored point, under a filter."""

    vector: list[float] | None
    point_id: str | None
    filter: PayloadFilter


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
    # Drafted like ingestion (which also makes a thumbnail from the decode): the stored copy of
    # this very image then has exactly this tensor, and a re-upload scores as a duplicate.
    tensor = load_for_model(
        image, runtime.preprocessing, settings.images, thumbnail_size=settings.thumbnail_size
    )
    return [float(x) for x in runtime.embedder.embed(tensor[None])[0]]


def _without_items(query_filter: PayloadFilter, item_ids: Sequence[str]) -> PayloadFilter:
    """The filter, also leaving out every image of these items."""
    if not item_ids:
        return query_filter
    excluded: Condition = (
        MatchCondition(key="item_id", value=item_ids[0])
        if len(item_ids) == 1
        else AnyOfCondition(key="item_id", values=list(item_ids))
    )
    return query_filter.model_copy(update={"must_not": [*query_filter.must_not, excluded]})


def _target(
    settings: Settings,
    store: VectorStore,
    model_id: str,
    *,
    image: bytes | None,
    item_id: str | None,
    vector: list[float] | None,
    query_filter: PayloadFilter | None,
) -> _Target:
    """Resolve image, item or vector (in that order of precedence) into what the store takes."""
    base = query_filter or PayloadFilter()
    if image is not None:
        return _Target(embed_query_image(settings, model_id, image), None, base)
    if item_id is not None:
        point_id = item_point_id(store, model_id, item_id)
        # The query item's other images are not "similar items": leave the item out entirely.
        return _Target(None, point_id, _without_items(base, [item_id]))
    if vector is not None:
        return _Target(vector, None, base)
    raise ValueError("a query needs an image, an item id or a vector")


def run_query(
    settings: Settings, store: VectorStore, query: SimilarityQuery, image: bytes | None = None
) -> list[ScoredPoint]:
    """Ranked results; with ``group_by``, the best hit of each group in group order."""
    target = _target(
        settings,
        store,
        query.model_id,
        image=image,
        item_id=query.item_id,
        vector=query.vector,
        query_filter=query.filter,
    )
    if query.group_by:
        groups = store.query_groups(
            query.model_id,
            group_by=query.group_by,
            vector=target.vector,
            point_id=target.point_id,
            filter=target.filter,
            limit=query.limit,
            group_size=1,
            score_threshold=query.score_threshold,
        )
        return [group.hits[0] for group in groups if group.hits]
    return store.query(
        query.model_id,
        vector=target.vector,
        point_id=target.point_id,
        filter=target.filter,
        limit=query.limit,
        offset=query.offset,
        score_threshold=query.score_threshold,
    )


# --- grouped queries and their cursors ----------------------------------------------------


def _query_digest(query: GroupQuery, image: bytes | None) -> str:
    """Fingerprint of what decides which groups exist, so a cursor only pages its own query."""
    # limit and group_size may change between pages: they do not change the groups' order.
    identity = {
        "model_id": query.model_id,
        "group_by": query.group_by,
        "item_id": query.item_id,
        "vector": query.vector,
        "image": None if image is None else hashlib.sha256(image).hexdigest(),
        "filter": None if query.filter is None else query.filter.model_dump(mode="json"),
        "score_threshold": query.score_threshold,
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(digest: str, keys: Sequence[GroupKey]) -> str:
    """The cursor of the page after the groups ``keys``: base64url JSON, no padding."""
    body = {"v": CURSOR_VERSION, "q": digest, "keys": list(keys)}
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _is_key(value: object) -> bool:
    # bool is an int subclass, but no group key is a bool (Qdrant groups by keyword or integer).
    return isinstance(value, str | int) and not isinstance(value, bool)


def decode_cursor(cursor: str, digest: str) -> list[GroupKey]:
    """Group keys already returned by the query ``digest``; ValueError for any other cursor."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        body: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise ValueError("invalid cursor: not a cursor this service issued") from exc
    if (
        not isinstance(body, dict)
        or body.get("v") != CURSOR_VERSION
        or not isinstance(body.get("q"), str)
        or not isinstance(body.get("keys"), list)
        or not all(_is_key(key) for key in body["keys"])
    ):
        raise ValueError("invalid cursor: not a cursor this service issued")
    keys: list[GroupKey] = body["keys"]
    if len(keys) > MAX_CURSOR_GROUPS:
        raise ValueError(
            f"invalid cursor: it holds {len(keys)} groups, more than the {MAX_CURSOR_GROUPS} a "
            "cursor may page past; narrow the filter instead"
        )
    if body["q"] != digest:
        raise ValueError(
            "invalid cursor: it belongs to another query (model, group_by, query, filter or "
            "score threshold changed); start again without a cursor"
        )
    return keys


def _without_groups(
    query_filter: PayloadFilter, group_by: str, keys: Sequence[GroupKey]
) -> PayloadFilter:
    """The filter, also leaving out the groups already returned."""
    # One any-of per type: Qdrant matches keyword and integer values separately.
    strings = [key for key in keys if isinstance(key, str)]
    integers = [key for key in keys if isinstance(key, int)]
    excluded: list[Condition] = [
        AnyOfCondition(key=group_by, values=values) for values in (strings, integers) if values
    ]
    if not excluded:
        return query_filter
    return query_filter.model_copy(update={"must_not": [*query_filter.must_not, *excluded]})


def group_query(
    settings: Settings, store: VectorStore, query: GroupQuery, image: bytes | None = None
) -> GroupPage:
    """One page of best matches grouped by a payload field; page on with ``next_cursor``."""
    if image is not None and (query.item_id is not None or query.vector is not None):
        raise ValueError("query by an image, an item id or a vector: exactly one")
    digest = _query_digest(query, image)
    seen = decode_cursor(query.cursor, digest) if query.cursor else []
    target = _target(
        settings,
        store,
        query.model_id,
        image=image,
        item_id=query.item_id,
        vector=query.vector,
        query_filter=query.filter,
    )
    # Qdrant groups have no offset: later pages leave out the groups earlier pages returned.
    # (A point whose group field holds several values also leaves the groups not yet seen.)
    groups = store.query_groups(
        query.model_id,
        group_by=query.group_by,
        vector=target.vector,
        point_id=target.point_id,
        filter=_without_groups(target.filter, query.group_by, seen),
        # One group more than the page tells whether a next page exists.
        limit=query.limit + 1,
        group_size=query.group_size,
        score_threshold=query.score_threshold,
    )
    page = groups[: query.limit]
    if len(groups) <= query.limit:
        return GroupPage(groups=page)
    keys = [*seen, *(group.key for group in page)]
    if len(keys) > MAX_CURSOR_GROUPS:
        return GroupPage(groups=page, cursor_limit_reached=True)
    return GroupPage(groups=page, next_cursor=encode_cursor(digest, keys))


# --- facets and recommendations -----------------------------------------------------------


def facet_counts(store: VectorStore, query: FacetQuery) -> FacetResult:
    """How many points have each value of a payload field, among those matching the filter."""
    counts = store.facet(query.model_id, query.key, filter=query.filter, limit=query.limit)
    return FacetResult(key=query.key, counts=counts)


def recommend_items(store: VectorStore, query: RecommendQuery) -> list[ScoredPoint]:
    """Points like the positive example items and unlike the negative ones; examples left out."""
    positive = list(dict.fromkeys(query.positive))
    negative = list(dict.fromkeys(query.negative))
    positive_ids = [item_point_id(store, query.model_id, item) for item in positive]
    negative_ids = [item_point_id(store, query.model_id, item) for item in negative]
    # The store leaves out the example points; their items' other images go too.
    query_filter = _without_items(query.filter or PayloadFilter(), [*positive, *negative])
    return store.recommend(
        query.model_id,
        positive=positive_ids,
        negative=negative_ids,
        filter=query_filter,
        limit=query.limit,
        offset=query.offset,
        score_threshold=query.score_threshold,
        strategy=query.strategy,
    )
