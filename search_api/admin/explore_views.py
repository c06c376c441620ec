"""Explore: a 2-D map (PCA) of a filtered subset, clusters coloured, thumbnails on hover.

The map is inline SVG drawn on the server from ``search_api.clusters``; each point is a
link to its item, so the map works with a keyboard (focus shows the same preview as hover).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import render_template, request

from schemas.queries import MAX_CLUSTERS, ClusterMember, ClusterQuery
from search_api.admin.blueprint import bp, chosen_model, parse_int, services
from search_api.admin.cards import Card, shown
from search_api.admin.problems import attempt
from search_api.admin.search_views import facet, model_options
from search_api.admin.state import SearchState

WIDTH, HEIGHT, PAD = 800.0, 480.0, 24.0
# Tableau 10: distinguishable, and every point's cluster is also named in its label.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
NOISE_COLOUR = "#8a8a8a"
DEFAULT_K = 6
# The page draws on every visit: a bigger subset is refused with "narrow the filters" rather
# than keeping the admin waiting on a clustering of the whole catalog.
EXPLORE_MAX_POINTS = 2000


@dataclass(frozen=True)
class MapPoint:
    """One point drawn on the map."""

    card: Card
    x: float
    y: float
    cluster: int | None  # None: noise
    colour: str

    @property
    def label(self) -> str:
        """What a screen reader (and the hover preview) says about the point."""
        where = "noise" if self.cluster is None else f"cluster {self.cluster + 1}"
        fields = ", ".join(f"{k} {v}" for k, v in self.card.fields(["brand", "category"]))
        return f"{self.card.item_id}, {where}" + (f", {fields}" if fields else "")


@dataclass(frozen=True)
class ClusterView:
    """A cluster's legend entry: colour, size and its most typical members."""

    number: int
    size: int
    colour: str
    examples: list[Card]


@dataclass(frozen=True)
class MapView:
    """Everything the explore page draws."""

    points: list[MapPoint]
    clusters: list[ClusterView]
    noise: int
    total: int
    explained: list[float]


def _scale(values: list[float], low: float, high: float) -> list[float]:
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return [(low + high) / 2 for _ in values]
    return [low + (v - lo) / (hi - lo) * (high - low) for v in values]


def cluster_map(query: ClusterQuery) -> MapView:
    """Cluster the subset and lay its points out on the SVG canvas."""
    # Imported here: scikit-learn takes most of a second to import, and only maps need it.
    from search_api.queries.clusters import cluster_items

    result = cluster_items(services().store, query)
    placed: list[tuple[ClusterMember, int | None]] = [
        (member, cluster.id) for cluster in result.clusters for member in cluster.members
    ]
    placed += [(member, None) for member in result.noise]
    xs = _scale([m.x for m, _ in placed], PAD, WIDTH - PAD)
    # SVG's y grows downwards; the first PCA axis stays horizontal.
    ys = _scale([-m.y for m, _ in placed], PAD, HEIGHT - PAD)
    points = [
        MapPoint(
            Card(member.point_id, member.item_id, query.model_id, member.payload),
            round(x, 1),
            round(y, 1),
            cluster,
            NOISE_COLOUR if cluster is None else PALETTE[cluster % len(PALETTE)],
        )
        for (member, cluster), x, y in zip(placed, xs, ys, strict=True)
    ]
    clusters = [
        ClusterView(
            cluster.id + 1,
            cluster.size,
            PALETTE[cluster.id % len(PALETTE)],
            [
                Card(m.point_id, m.item_id, query.model_id, m.payload, m.similarity)
                for m in cluster.members[:6]
            ],
        )
        for cluster in result.clusters
    ]
    return MapView(points, clusters, len(result.noise), result.points, result.explained_variance)


@bp.get("/explore")
def explore() -> str:
    """The 2-D map of the items matching the filters."""
    settings = services().settings
    config = settings.admin
    model_id = chosen_model(request.args.get("model"))
    state = SearchState.parse(request.args, model_id, config)
    method = "hdbscan" if request.args.get("method") == "hdbscan" else "kmeans"
    k = parse_int(request.args.get("k"), DEFAULT_K, low=2, high=MAX_CLUSTERS)
    min_size = parse_int(request.args.get("min_size"), 5, low=2, high=1000)
    query = ClusterQuery(
        model_id=model_id,
        filter=state.payload_filter(),
        method=method,
        k=k,
        min_cluster_size=min_size,
        max_points=min(settings.api.max_cluster_points, EXPLORE_MAX_POINTS),
        payload_fields=["thumbnail_key", *config.card_fields],
    )
    return render_template(
        "admin/explore.html",
        active="admin_ui.explore",
        state=state,
        config=config,
        models=model_options(model_id),
        facets={
            name: attempt(functools.partial(facet, state, name)) for name in config.facet_fields
        },
        method=method,
        k=k,
        min_size=min_size,
        max_clusters=MAX_CLUSTERS,
        result=attempt(functools.partial(cluster_map, query)),
        width=int(WIDTH),
        height=int(HEIGHT),
        shown=shown,
    )
