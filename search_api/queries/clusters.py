"""Clustering of stored vectors (k-means, HDBSCAN) with representatives and a 2-D PCA map."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from ingest.errors import StoreError
from ingest.store.base import VectorStore, scroll_pages
from schemas.points import StoredPoint
from schemas.queries import Cluster, ClusterMember, ClusterQuery, ClusterResult
from search_api.queries.refusals import TooManyPoints

# Fixed seed: the same catalog and query always give the same clusters and map.
RANDOM_STATE = 0
KMEANS_INITS = 4
SCROLL_PAGE = 256
NOISE = -1

Matrix = npt.NDArray[np.float64]
Labels = npt.NDArray[np.intp]


def _load(store: VectorStore, query: ClusterQuery) -> list[StoredPoint]:
    """Every matching point with its vector, in id order; refused above ``max_points``."""
    count = store.count(query.model_id, filter=query.filter)
    # Checked before any vector is read: the bound is there to protect memory.
    if count > query.max_points:
        raise TooManyPoints(count, query.max_points)
    points: list[StoredPoint] = []
    pages = scroll_pages(
        store, query.model_id, page_size=SCROLL_PAGE, filter=query.filter, with_vectors=True
    )
    for page in pages:
        points.extend(page)
        # Points may arrive between count and scroll: keep the bound anyway.
        if len(points) > query.max_points:
            raise TooManyPoints(len(points), query.max_points)
    return points


def _matrix(points: list[StoredPoint]) -> Matrix:
    """Unit-length vectors, one row per point."""
    rows = []
    for point in points:
        if point.vector is None:
            raise StoreError(f"point {point.id!r} came back without its vector")
        rows.append(point.vector)
    matrix = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: Matrix = matrix / np.where(norms == 0.0, 1.0, norms)
    return normalised


def _labels(matrix: Matrix, query: ClusterQuery) -> Labels:
    """Cluster label per row; ``NOISE`` for points a density method leaves out."""
    n = len(matrix)
    if query.method == "kmeans":
        if n < query.k:
            raise ValueError(f"{n} points cannot form {query.k} clusters; lower k")
        with warnings.catch_warnings():
            # Duplicate images can leave fewer distinct points than k: the clusters found
            # are still right, there are just fewer of them.
            warnings.simplefilter("ignore", ConvergenceWarning)
            kmeans = KMeans(n_clusters=query.k, n_init=KMEANS_INITS, random_state=RANDOM_STATE)
            labels: Labels = kmeans.fit_predict(matrix)
        return labels
    if n < max(2, query.min_cluster_size):
        return np.full(n, NOISE, dtype=np.intp)
    # Euclidean distance between unit vectors is sqrt(2 - 2 cos): the same neighbours as cosine
    # distance, but it runs on a tree in O(n) memory where the cosine metric needs the full
    # n x n distance matrix.
    hdbscan = HDBSCAN(min_cluster_size=query.min_cluster_size, metric="euclidean", copy=True)
    density_labels: Labels = hdbscan.fit_predict(matrix)
    return density_labels


def _project(matrix: Matrix) -> tuple[Matrix, list[float]]:
    """2-D PCA coordinates per row, and the share of variance each axis explains."""
    coords: Matrix = np.zeros((len(matrix), 2))
    # PCA of fewer than two distinct points has no variance to explain (it would divide by 0).
    if len(matrix) < 2 or not np.any(np.ptp(matrix, axis=0) > 0):
        return coords, []
    components = min(2, *matrix.shape)
    pca = PCA(n_components=components, svd_solver="full", random_state=RANDOM_STATE)
    coords[:, :components] = pca.fit_transform(matrix)
    return coords, [float(ratio) for ratio in pca.explained_variance_ratio_]


def _member(
    point: StoredPoint, xy: Matrix, query: ClusterQuery, similarity: float | None
) -> ClusterMember:
    return ClusterMember(
        point_id=point.id,
        item_id=point.item_id,
        x=float(xy[0]),
        y=float(xy[1]),
        similarity=similarity,
        payload={key: point.payload[key] for key in query.payload_fields if key in point.payload},
    )


def _cluster(
    rows: npt.NDArray[np.intp],
    points: list[StoredPoint],
    matrix: Matrix,
    coords: Matrix,
    query: ClusterQuery,
) -> Cluster:
    """A cluster of these rows, its members most typical first (id 0 until numbered)."""
    centroid = matrix[rows].mean(axis=0)
    # Unit rows: the member nearest the centroid (Euclidean) is the one of highest cosine.
    similarity = matrix[rows] @ centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    order = sorted(range(len(rows)), key=lambda i: (-similarity[i], points[rows[i]].id))
    members = [
        _member(points[rows[i]], coords[rows[i]], query, float(similarity[i])) for i in order
    ]
    return Cluster(
        id=0,
        size=len(members),
        representative_point_id=members[0].point_id,
        representative_item_id=members[0].item_id,
        members=members,
    )


def cluster_items(store: VectorStore, query: ClusterQuery) -> ClusterResult:
    """Cluster the items matching the filter; refuses with ``TooManyPoints`` before loading."""
    points = _load(store, query)
    if not points:
        return ClusterResult(method=query.method, points=0, clusters=[])
    matrix = _matrix(points)
    labels = _labels(matrix, query)
    coords, explained = _project(matrix)
    clusters = [
        _cluster(np.flatnonzero(labels == label), points, matrix, coords, query)
        for label in np.unique(labels)
        if label != NOISE
    ]
    # Numbered largest first (ties by their first member's id) so ids do not depend on the
    # labels the algorithm happened to pick.
    clusters.sort(key=lambda c: (-c.size, min(m.point_id for m in c.members)))
    numbered = [cluster.model_copy(update={"id": i}) for i, cluster in enumerate(clusters)]
    noise_rows = np.flatnonzero(labels == NOISE)
    noise = sorted(
        (_member(points[row], coords[row], query, None) for row in noise_rows),
        key=lambda member: member.point_id,
    )
    return ClusterResult(
        method=query.method,
        points=len(points),
        clusters=numbered,
        noise=noise,
        explained_variance=explained,
    )
