"""Group-by for the embedded store, which has no ``query_points_groups``: the same answer,
built from ordinary searches.

What Qdrant answers (and what qdrant-client's local mode computes by brute force): walk the
hits best first; a point joins the group of every distinct value of the field (a list joins
several groups); a point lacking the field, or with a value that is neither a string nor an
integer, joins none; a group keeps its first ``group_size`` hits; groups are ordered by their
best hit, and the first ``limit`` are returned. The score threshold and filter apply to all.

How it is computed here, exactly and without reading the whole collection in the usual cases:

1. Over-fetch hits (only the group field's payload), growing the fetch 4x per round, until
   ``limit`` groups are found or the collection is exhausted. Groups not yet seen cannot rank
   above those found, since their best hit scores below every hit fetched.
2. A found group with fewer than ``group_size`` hits may have more further down: one filtered
   search per such group (``field == key``, in one batch) gives its true best hits.
3. Read the full payloads of the chosen hits only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import qdrant_edge as edge

from ingest.store.edge_convert import scored_point, to_edge_filter
from schemas.points import PayloadFilter, PointGroup

GroupKey = str | int
# Hits of one search: (limit, extra must conditions, payload wanted) -> best first.
Search = Callable[[list[tuple[int, list[edge.FieldCondition]]]], list[list[edge.ScoredPoint]]]

_MIN_FETCH = 16
_GROWTH = 4


def group_keys(payload: dict[str, Any], key: str) -> list[GroupKey] | None:
    """The distinct groups a point joins, or None if it joins none (see the module doc)."""
    data: Any = payload
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    values = data if isinstance(data, list) else [data]
    # `type() in` rather than isinstance: True is an int to Python but no group to Qdrant,
    # and the server drops a point as soon as one of its values cannot be a group.
    if any(type(value) not in (str, int) for value in values):
        return None
    return list(dict.fromkeys(values))


def _group(
    hits: Sequence[edge.ScoredPoint], key: str, group_size: int
) -> dict[GroupKey, list[edge.ScoredPoint]]:
    """Hits (best first) into groups ordered by their best hit, each cut at group_size."""
    groups: dict[GroupKey, list[edge.ScoredPoint]] = {}
    for hit in hits:
        for value in group_keys(dict(hit.payload or {}), key) or ():
            members = groups.setdefault(value, [])
            if len(members) < group_size:
                members.append(hit)
    return groups


def _fill(
    search: Search,
    key: str,
    groups: dict[GroupKey, list[edge.ScoredPoint]],
    group_size: int,
) -> None:
    """Give every group lacking hits its true best ``group_size`` hits (in place)."""
    limits = {value: group_size for value, hits in groups.items() if len(hits) < group_size}
    while limits:
        values = list(limits)
        answers = search(
            [
                (limits[value], [edge.FieldCondition(key=key, match=edge.MatchValue(value))])
                for value in values
            ]
        )
        for value, hits in zip(values, answers, strict=True):
            members = _group(hits, key, group_size).get(value, [])
            groups[value] = members
            # Points of the group dropped as ungroupable (say, also holding a boolean) took
            # places in the answer: ask again for more, unless the group has no more points.
            if len(members) < group_size and len(hits) == limits[value]:
                limits[value] *= _GROWTH
            else:
                del limits[value]


def find_groups(
    search: Search,
    read_payloads: Callable[[list[str]], dict[str, dict[str, Any]]],
    *,
    key: str,
    limit: int,
    group_size: int,
) -> list[PointGroup]:
    """The best ``limit`` groups of at most ``group_size`` hits, as Qdrant would answer."""
    if limit <= 0 or group_size <= 0:
        return []
    fetch = max(limit * group_size, _MIN_FETCH)
    while True:
        [hits] = search([(fetch, [])])
        groups = _group(hits, key, group_size)
        exhausted = len(hits) < fetch
        if exhausted or len(groups) >= limit:
            break
        fetch *= _GROWTH
    chosen = dict(list(groups.items())[:limit])
    if not exhausted:
        _fill(search, key, chosen, group_size)
    payloads = read_payloads([str(hit.id) for hits in chosen.values() for hit in hits])
    return [
        PointGroup(key=value, hits=[scored_point(hit, payloads[str(hit.id)]) for hit in hits])
        for value, hits in chosen.items()
    ]


def query_groups(
    shard: edge.EdgeShard,
    query: edge.Query,
    *,
    params: edge.SearchParams,
    payload_filter: PayloadFilter | None,
    exclude_ids: Sequence[str],
    group_by: str,
    limit: int,
    group_size: int,
    score_threshold: float | None,
) -> list[PointGroup]:
    """Qdrant's ``query_points_groups`` on one shard (the query, filter and threshold apply)."""

    def search(
        requests: list[tuple[int, list[edge.FieldCondition]]],
    ) -> list[list[edge.ScoredPoint]]:
        batch = [
            edge.QueryRequest(
                limit=fetch,
                query=query,
                filter=to_edge_filter(
                    payload_filter,
                    exclude_ids=exclude_ids,
                    extra_must=extra,
                    # Points lacking the field join no group: no need to fetch them.
                    extra_must_not=[edge.IsEmptyCondition(group_by)],
                ),
                score_threshold=score_threshold,
                params=params,
                with_payload=edge.PayloadSelector.Include([group_by]),
            )
            for fetch, extra in requests
        ]
        return shard.query_batch(edge.QueryBatchRequest(batch))

    def read_payloads(ids: list[str]) -> dict[str, dict[str, Any]]:
        records = shard.retrieve(list(dict.fromkeys(ids)), True, False)
        return {str(r.id): dict(r.payload or {}) for r in records}

    return find_groups(search, read_payloads, key=group_by, limit=limit, group_size=group_size)
