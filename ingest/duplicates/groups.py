"""Collection-wide duplicate groups: the scan, the duplicate graph and how it is grouped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

from ingest.store.base import VectorStore, scroll_pages
from schemas.duplicates import (
    DuplicateGroup,
    DuplicateLink,
    DuplicateMatch,
    DuplicatePoint,
)
from schemas.points import StoredPoint

Pair = frozenset[str]
NO_HIDDEN: frozenset[Pair] = frozenset()


ProgressCallback = Callable[[int, int], None]


SCAN_BATCH = 256


# Neighbours kept per point: bounds edges (and memory) at points x this, even when thousands
# of placeholder images are all identical.
MAX_NEIGHBORS = 100


def partners_of(hidden: AbstractSet[Pair]) -> dict[str, set[str]]:
    """For each point, the points a reviewer said it does not duplicate."""
    partners: dict[str, set[str]] = {}
    for hidden_pair in hidden:
        if len(hidden_pair) != 2:
            continue
        a, b = sorted(hidden_pair)
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    return partners


def pair(a: str, b: str) -> Pair:
    """The unordered pair of two point ids."""
    return frozenset((a, b))


@dataclass
class _Graph:
    """The duplicate graph: point ids as small ints, edges as per-node score maps."""

    ids: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    edges: dict[int, dict[int, float]] = field(default_factory=dict)

    def node(self, point_id: str) -> int:
        """The point's node, added on first sight (neighbours may come before their scan)."""
        found = self.index.get(point_id)
        if found is None:
            found = self.index[point_id] = len(self.ids)
            self.ids.append(point_id)
        return found

    def link(self, a: int, b: int, score: float) -> None:
        """Record a duplicate pair."""
        # Undirected: a capped neighbour list may hold b for a but not a for b.
        score = max(score, self.edges.get(a, {}).get(b, score))
        self.edges.setdefault(a, {})[b] = score
        self.edges.setdefault(b, {})[a] = score

    def neighbours(self, node: int) -> dict[int, float]:
        """The node's duplicates and their scores."""
        return self.edges.get(node, {})

    def seed_order(self, nodes: Iterable[int]) -> list[int]:
        """Most-connected first, then by point id: deterministic for a given graph."""
        return sorted(nodes, key=lambda n: (-len(self.neighbours(n)), self.ids[n]))


def _scan(
    store: VectorStore,
    model_id: str,
    *,
    threshold: float,
    batch: int,
    max_neighbors: int,
    hidden: AbstractSet[Pair],
    progress: ProgressCallback | None,
) -> _Graph:
    """Ask the index for every point's neighbours above the threshold, one batch per page."""
    total = store.count(model_id)
    dismissed = partners_of(hidden)
    graph = _Graph()
    scanned = 0
    if progress is not None:
        progress(0, total)
    for page in scroll_pages(store, model_id, page_size=batch, with_vectors=True):
        scanned_points = [point for point in page if point.vector is not None]
        # Querying by the vectors we already hold saves the store a lookup per point, and one
        # batched request per page lets the engine plan the page's searches together; each
        # point comes back as its own best hit, hence the extra place.
        widest = max((len(dismissed.get(p.id, ())) for p in scanned_points), default=0)
        answers = store.query_batch(
            model_id,
            [point.vector for point in scanned_points if point.vector is not None],
            limit=max_neighbors + 1 + widest,
            score_threshold=threshold,
        )
        for point, hits in zip(scanned_points, answers, strict=True):
            me = graph.node(point.id)
            partners = dismissed.get(point.id, set())
            kept = 0
            for hit in hits:
                if hit.id == point.id or hit.id in partners:
                    continue
                graph.link(me, graph.node(hit.id), hit.score)
                kept += 1
                if kept == max_neighbors:
                    break
        scanned += len(page)
        if progress is not None:
            # Points ingested during the scan are scanned too: the total grows with them.
            progress(scanned, max(total, scanned))
    return graph


def _clique_groups(graph: _Graph) -> list[tuple[int, list[int]]]:
    """Seeds in order take free neighbours that duplicate every member admitted so far."""
    grouped: set[int] = set()
    groups = []
    for seed in graph.seed_order(graph.edges):
        if seed in grouped:
            continue
        members: list[int] = []
        candidates = sorted(graph.neighbours(seed).items(), key=lambda e: (-e[1], graph.ids[e[0]]))
        for candidate, _score in candidates:
            if candidate in grouped:
                continue
            reach = graph.neighbours(candidate)
            if all(member in reach for member in members):
                members.append(candidate)
        if members:
            grouped.add(seed)
            grouped.update(members)
            groups.append((seed, members))
    return groups


def _components(graph: _Graph) -> list[tuple[int, list[int]]]:
    """Connected components (union-find), each seeded by its most-connected point."""
    parent = {node: node for node in graph.edges}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving keeps the trees flat
            node = parent[node]
        return node

    for a, neighbours in graph.edges.items():
        for b in neighbours:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    components: dict[int, list[int]] = {}
    for node in graph.edges:
        components.setdefault(root(node), []).append(node)
    groups = []
    for nodes in components.values():
        seed = graph.seed_order(nodes)[0]
        groups.append((seed, [node for node in nodes if node != seed]))
    return groups


def _chunks(
    groups: list[tuple[int, list[int]]], size: int
) -> Iterator[list[tuple[int, list[int]]]]:
    """Consecutive groups holding about ``size`` points per chunk (one big group alone)."""
    chunk: list[tuple[int, list[int]]] = []
    points = 0
    for group in groups:
        chunk.append(group)
        points += 1 + len(group[1])
        if points >= size:
            yield chunk
            chunk, points = [], 0
    if chunk:
        yield chunk


def _cosine_to(seed: Sequence[float], others: Sequence[Sequence[float]]) -> list[float]:
    matrix = np.asarray(others, dtype=np.float32)
    anchor = np.asarray(seed, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(anchor))
    return [float(x) for x in (matrix @ anchor) / np.maximum(norms, 1e-12)]


def _point(stored: StoredPoint) -> DuplicatePoint:
    return DuplicatePoint(point_id=stored.id, item_id=stored.item_id, payload=stored.payload)


def _build_group(
    graph: _Graph,
    seed: int,
    members: list[int],
    found: dict[str, StoredPoint],
    *,
    transitive: bool,
) -> DuplicateGroup | None:
    """A stored group from graph nodes; points deleted since the scan are left out."""
    seed_point = found.get(graph.ids[seed])
    present = [m for m in members if graph.ids[m] in found]
    if seed_point is None or not present:
        return None
    if transitive:
        # Members of a chain need not be neighbours of the seed: score them against it.
        vectors = [found[graph.ids[m]].vector or [] for m in present]
        scores = _cosine_to(seed_point.vector or [], vectors)
    else:
        scores = [graph.neighbours(seed)[m] for m in present]
    matches = [
        DuplicateMatch(
            point_id=graph.ids[m],
            item_id=found[graph.ids[m]].item_id,
            payload=found[graph.ids[m]].payload,
            score=score,
        )
        for m, score in zip(present, scores, strict=True)
    ]
    matches.sort(key=lambda match: (-match.score, match.point_id))
    links: list[DuplicateLink] = []
    if transitive:
        inside = {seed, *present}
        for a in sorted(inside, key=lambda n: graph.ids[n]):
            for b, score in graph.neighbours(a).items():
                if b in inside and graph.ids[a] < graph.ids[b]:
                    links.append(DuplicateLink(a=graph.ids[a], b=graph.ids[b], score=score))
    return DuplicateGroup(
        group_id=seed_point.id, seed=_point(seed_point), members=matches, links=links
    )


def find_duplicate_groups(
    store: VectorStore,
    model_id: str,
    *,
    threshold: float,
    transitive: bool = False,
    batch: int = SCAN_BATCH,
    max_neighbors: int = MAX_NEIGHBORS,
    progress: ProgressCallback | None = None,
    hidden_pairs: AbstractSet[Pair] = NO_HIDDEN,
) -> list[DuplicateGroup]:
    """Every group of near-duplicates in a model's collection, biggest first."""
    if batch < 1 or max_neighbors < 1:
        raise ValueError("batch and max_neighbors must be positive")
    graph = _scan(
        store,
        model_id,
        threshold=threshold,
        batch=batch,
        max_neighbors=max_neighbors,
        hidden=hidden_pairs,
        progress=progress,
    )
    nodes = _components(graph) if transitive else _clique_groups(graph)
    groups: list[DuplicateGroup] = []
    for chunk in _chunks(nodes, batch):
        ids = [graph.ids[n] for seed, members in chunk for n in (seed, *members)]
        found = {p.id: p for p in store.retrieve(model_id, ids, with_vectors=transitive)}
        for seed, members in chunk:
            group = _build_group(graph, seed, members, found, transitive=transitive)
            if group is not None:
                groups.append(group)
    groups.sort(key=lambda group: (-group.size, group.group_id))
    return groups


def visible_group(
    group: DuplicateGroup, hidden: AbstractSet[Pair], *, transitive: bool
) -> DuplicateGroup | None:
    """The group as reviewers see it now: dismissed pairs split off; None if nothing is left."""
    if transitive:
        # Drop dismissed links, then keep what is still connected to the seed.
        adjacency: dict[str, set[str]] = {}
        links = [link for link in group.links if pair(link.a, link.b) not in hidden]
        for link in links:
            adjacency.setdefault(link.a, set()).add(link.b)
            adjacency.setdefault(link.b, set()).add(link.a)
        reached = {group.seed.point_id}
        frontier = [group.seed.point_id]
        while frontier:
            for other in adjacency.get(frontier.pop(), set()) - reached:
                reached.add(other)
                frontier.append(other)
        members = [m for m in group.members if m.point_id in reached]
        links = [link for link in links if link.a in reached]
    else:
        # Every pair in the group is a duplicate: a dismissed pair must not stay together.
        members = []
        for member in group.members:
            if pair(group.seed.point_id, member.point_id) in hidden:
                continue
            if any(pair(member.point_id, kept.point_id) in hidden for kept in members):
                continue
            members.append(member)
        links = []
    if not members:
        return None
    if len(members) == len(group.members) and len(links) == len(group.links):
        return group
    return group.model_copy(update={"members": members, "links": links})
