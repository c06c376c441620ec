"""Near-duplicate images: matches for one image or item, and collection-wide duplicate groups.

Two images are near-duplicates when the cosine similarity of their embeddings is above the
model's duplicate threshold. Everything here asks the store's ANN index for "neighbours above
the threshold"; nothing ever builds an all-pairs matrix.

Threshold
    ``ModelSpec.duplicate_threshold`` is the per-model default (override it per call, or in
    a registered model's manifest). For real DINOv2/DINOv3 weights it is 0.95: seed 001 uses
    0.95 to decide "two photos show the same content" (and 0.98 for strict copies only), and
    seed 002 warns that each model needs its own value. Measure yours with
    ``calibrate_threshold`` on pairs you know to be duplicates and pairs you know are not:
    when every duplicate scores above every distinct pair it returns the midpoint between the
    lowest duplicate and the highest distinct score (the widest margin on both sides);
    otherwise the cut with the fewest misclassified pairs, the highest such cut on ties (a
    false merge costs a reviewer more than a missed duplicate, which ``near_duplicates`` still
    finds at a lower threshold). The random-weight test model, calibrated on 12 synthetic
    pictures with 4 near-duplicates each (crop, half size, JPEG q40, mirror; see
    ``tests/ingest/test_duplicates.py``), gives 0.962: lowest duplicate pair 0.971, highest
    distinct pair 0.953. Its pictures differ only in gradients and shapes, and on larger sets
    its distinct pairs reach 0.99, so that value is for tests only.

Groups
    A background scan reads every point page by page and asks the index for that point's
    neighbours above the threshold (at most ``max_neighbors``): O(points) queries, memory
    O(points + edges), never a points x points matrix. Without ``transitive``, seeds are taken
    most-connected first (then by point id), and a seed admits its not yet grouped neighbours,
    best first, that are also neighbours of every member admitted so far: every pair in a
    group is a duplicate pair, so A~B and B~C never put A and C together unless A~C. With
    ``transitive``, groups are the connected components of the duplicate graph (A~B~C is one
    group however long the chain), members scored against the most connected point. Pairs
    reviewers marked "not a duplicate" are not edges. Of more than ``max_neighbors`` identical
    copies of one image, a scan groups those the capped answers name (transitive: all).
"""

from __future__ import annotations

import bisect
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from ingest.errors import LookalikeError
from ingest.registry import ModelRegistry
from ingest.store.base import VectorStore
from schemas.duplicates import (
    DuplicateGroup,
    DuplicateJob,
    DuplicateJobStatus,
    DuplicateLink,
    DuplicateMatch,
    DuplicatePage,
    DuplicatePoint,
)
from schemas.points import MatchCondition, PayloadFilter, ScoredPoint, StoredPoint

Pair = frozenset[str]
ProgressCallback = Callable[[int, int], None]

SCAN_BATCH = 256
# Neighbours kept per point: bounds edges (and memory) at points x this, even when thousands
# of placeholder images are all identical.
MAX_NEIGHBORS = 100
ITEM_IMAGES_LIMIT = 100
NO_HIDDEN: frozenset[Pair] = frozenset()


class DuplicateJobNotFound(LookalikeError):
    """No duplicate job with this id (never created, or dropped as too old)."""


def pair(a: str, b: str) -> Pair:
    """The unordered pair of two point ids."""
    return frozenset((a, b))


def default_threshold(registry: ModelRegistry, model_id: str) -> float:
    """The model's calibrated duplicate threshold from its spec (known model or manifest)."""
    return registry.spec(model_id).duplicate_threshold


def resolve_threshold(registry: ModelRegistry, model_id: str, threshold: float | None) -> float:
    """An explicit threshold if given, else the model's default."""
    return default_threshold(registry, model_id) if threshold is None else threshold


def calibrate_threshold(
    duplicate_scores: Iterable[float], distinct_scores: Iterable[float]
) -> float:
    """A threshold between known duplicate pairs' scores and distinct pairs' (rule above)."""
    duplicates = sorted(float(score) for score in duplicate_scores)
    distinct = sorted(float(score) for score in distinct_scores)
    if not duplicates or not distinct:
        raise ValueError("calibration needs at least one duplicate and one distinct pair")
    if duplicates[0] > distinct[-1]:
        return (duplicates[0] + distinct[-1]) / 2
    values = sorted(set(duplicates + distinct))
    # Cuts between consecutive observed scores: no score sits exactly on one.
    cuts = [(low + high) / 2 for low, high in itertools.pairwise(values)]
    best_cut, best_errors = values[-1], len(duplicates)
    for cut in cuts:
        missed = bisect.bisect_left(duplicates, cut)
        merged = len(distinct) - bisect.bisect_right(distinct, cut)
        if missed + merged <= best_errors:
            best_cut, best_errors = cut, missed + merged
    return max(-1.0, min(1.0, best_cut))


def _partners(hidden: AbstractSet[Pair]) -> dict[str, set[str]]:
    """For each point, the points a reviewer said it does not duplicate."""
    partners: dict[str, set[str]] = {}
    for hidden_pair in hidden:
        if len(hidden_pair) != 2:
            continue
        a, b = sorted(hidden_pair)
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    return partners


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
    dismissed = _partners(hidden).get(point_id, set()) if point_id is not None else set()
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
    """Ask the index for every point's neighbours above the threshold, one page at a time."""
    total = store.count(model_id)
    dismissed = _partners(hidden)
    graph = _Graph()
    scanned = 0
    if progress is not None:
        progress(0, total)
    offset: str | None = None
    while True:
        page, offset = store.scroll(model_id, limit=batch, offset=offset, with_vectors=True)
        for point in page:
            if point.vector is None:
                continue  # scrolled with vectors, so never; but nothing to compare without one
            me = graph.node(point.id)
            partners = dismissed.get(point.id, set())
            # Querying by the vector we already hold saves the store a lookup per point; the
            # point itself comes back as its own best hit, hence the extra place.
            hits = store.query(
                model_id,
                vector=point.vector,
                limit=max_neighbors + 1 + len(partners),
                score_threshold=threshold,
            )
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
        if offset is None:
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


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def _now() -> datetime:
    return datetime.now(UTC)


_TERMINAL = (DuplicateJobStatus.DONE, DuplicateJobStatus.FAILED)


class DuplicateResults:
    """Duplicate jobs, their stored groups and reviewers' "not a duplicate" pairs, in Redis."""

    # Keys under <prefix>:duplicates: job:<id> (job JSON), job:<id>:groups (list of group JSON
    # in page order), jobs:<model> (job ids scored by creation time), hidden:<model> (set of
    # "a|b" pairs). Groups are stored as found; dismissals apply when a page is read, so a
    # reviewer's click shows at once without a new scan.

    def __init__(
        self, client: redis.Redis, *, prefix: str = "lookalike", keep_jobs: int = 5
    ) -> None:
        self.client = client
        self.prefix = f"{prefix}:duplicates"
        self.keep_jobs = keep_jobs

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _groups_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:groups"

    def _jobs_key(self, model_id: str) -> str:
        return f"{self.prefix}:jobs:{model_id}"

    def _hidden_key(self, model_id: str) -> str:
        return f"{self.prefix}:hidden:{model_id}"

    def create_job(
        self,
        model_id: str,
        *,
        threshold: float,
        transitive: bool = False,
        job_id: str | None = None,
    ) -> DuplicateJob:
        """Record a queued job (and forget the model's oldest finished jobs beyond the limit)."""
        job = DuplicateJob(
            job_id=job_id or uuid.uuid4().hex,
            model_id=model_id,
            threshold=threshold,
            transitive=transitive,
            created_at=_now(),
        )
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._job_key(job.job_id), job.model_dump_json())
            pipe.zadd(self._jobs_key(model_id), {job.job_id: job.created_at.timestamp()})
            pipe.execute()
        self._forget_old_jobs(model_id)
        return job

    def _forget_old_jobs(self, model_id: str) -> None:
        jobs = self.jobs(model_id)
        # Running jobs still write their results: only finished ones are dropped.
        for old in [j for j in jobs[self.keep_jobs :] if j.status in _TERMINAL]:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._job_key(old.job_id), self._groups_key(old.job_id))
                pipe.zrem(self._jobs_key(model_id), old.job_id)
                pipe.execute()

    def job(self, job_id: str) -> DuplicateJob | None:
        """A job's metadata, status and progress; None if unknown."""
        raw = self.client.get(self._job_key(job_id))
        return DuplicateJob.model_validate_json(raw) if raw else None

    def _require(self, job_id: str) -> DuplicateJob:
        job = self.job(job_id)
        if job is None:
            raise DuplicateJobNotFound(f"no duplicate job {job_id!r}")
        return job

    def _update(self, job_id: str, **changes: Any) -> DuplicateJob:
        # One writer per job (its task), so read-modify-write needs no lock.
        job = self._require(job_id).model_copy(update=changes)
        self.client.set(self._job_key(job_id), job.model_dump_json())
        return job

    def jobs(self, model_id: str) -> list[DuplicateJob]:
        """The model's jobs, newest first."""
        members = self.client.zrevrange(self._jobs_key(model_id), 0, -1)
        # Without scores the stubs' (member, score) tuples never occur.
        ids = [_text(m) for m in members if isinstance(m, bytes | str)]
        if not ids:
            return []
        raws = self.client.mget([self._job_key(i) for i in ids])
        return [DuplicateJob.model_validate_json(raw) for raw in raws if raw]

    def latest_job(
        self, model_id: str, *, status: DuplicateJobStatus | None = None
    ) -> DuplicateJob | None:
        """The model's newest job (with this status, if given)."""
        for job in self.jobs(model_id):
            if status is None or job.status is status:
                return job
        return None

    def start(self, job_id: str) -> DuplicateJob:
        """Mark a job running (again, after a redelivery), clearing any earlier outcome."""
        return self._update(
            job_id,
            status=DuplicateJobStatus.RUNNING,
            started_at=_now(),
            finished_at=None,
            error=None,
            points_scanned=0,
        )

    def progress(self, job_id: str, scanned: int, total: int) -> None:
        """Record how many points a running job has scanned."""
        self._update(job_id, points_scanned=scanned, points_total=total)

    def finish(self, job_id: str, groups: Sequence[DuplicateGroup]) -> DuplicateJob:
        """Store a job's groups in the given order and mark it done, atomically."""
        job = self._require(job_id).model_copy(
            update={
                "status": DuplicateJobStatus.DONE,
                "groups": len(groups),
                "finished_at": _now(),
                "error": None,
            }
        )
        key = self._groups_key(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            for start in range(0, len(groups), 500):
                pipe.rpush(key, *(g.model_dump_json() for g in groups[start : start + 500]))
            pipe.set(self._job_key(job_id), job.model_dump_json())
            pipe.execute()
        return job

    def fail(self, job_id: str, error: str) -> DuplicateJob:
        """Mark a job failed with the reason."""
        return self._update(
            job_id, status=DuplicateJobStatus.FAILED, finished_at=_now(), error=error
        )

    def page(self, job_id: str, *, offset: int = 0, limit: int = 50) -> DuplicatePage:
        """Groups from ``offset`` on, skipping those emptied by dismissed pairs."""
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        job = self._require(job_id)
        key = self._groups_key(job_id)
        total = int(self.client.llen(key)) if job.status is DuplicateJobStatus.DONE else 0
        hidden = self.hidden_pairs(job.model_id)
        groups: list[DuplicateGroup] = []
        position = offset
        while len(groups) < limit and position < total:
            raws = self.client.lrange(key, position, position + limit - 1)
            if not raws:
                break
            for raw in raws:
                position += 1
                group = visible_group(
                    DuplicateGroup.model_validate_json(raw), hidden, transitive=job.transitive
                )
                if group is not None:
                    groups.append(group)
                    if len(groups) == limit:
                        break
        return DuplicatePage(
            job=job,
            groups=groups,
            offset=offset,
            next_offset=position if position < total else None,
            total=total,
        )

    @staticmethod
    def _member(a: str, b: str) -> str:
        return "|".join(sorted((a, b)))

    def mark_not_duplicate(self, model_id: str, point_a: str, point_b: str) -> bool:
        """Hide a pair from every result; False if it was already hidden."""
        if point_a == point_b:
            raise ValueError("a point is always a duplicate of itself")
        return bool(self.client.sadd(self._hidden_key(model_id), self._member(point_a, point_b)))

    def unmark_not_duplicate(self, model_id: str, point_a: str, point_b: str) -> bool:
        """Show a dismissed pair again; False if it was not hidden."""
        return bool(self.client.srem(self._hidden_key(model_id), self._member(point_a, point_b)))

    def hidden_pairs(self, model_id: str) -> set[Pair]:
        """Every pair reviewers marked "not a duplicate" in this model's collection."""
        return {
            frozenset(_text(member).split("|"))
            for member in self.client.smembers(self._hidden_key(model_id))
        }


def run_duplicate_job(
    store: VectorStore,
    results: DuplicateResults,
    job_id: str,
    *,
    model_id: str,
    threshold: float,
    transitive: bool = False,
    batch: int = SCAN_BATCH,
    max_neighbors: int = MAX_NEIGHBORS,
) -> DuplicateJob:
    """Run a recorded (or unrecorded) job to done or failed, reporting progress as it goes."""
    job = results.job(job_id)
    if job is not None and job.status is DuplicateJobStatus.DONE:
        return job  # a redelivered message of a job that already finished
    if job is None:
        results.create_job(model_id, threshold=threshold, transitive=transitive, job_id=job_id)
    results.start(job_id)
    try:
        groups = find_duplicate_groups(
            store,
            model_id,
            threshold=threshold,
            transitive=transitive,
            batch=batch,
            max_neighbors=max_neighbors,
            progress=lambda scanned, total: results.progress(job_id, scanned, total),
            hidden_pairs=results.hidden_pairs(model_id),
        )
    except Exception as error:
        results.fail(job_id, f"{type(error).__name__}: {error}")
        raise
    return results.finish(job_id, groups)
