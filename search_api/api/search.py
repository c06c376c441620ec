"""Similarity queries (image, item, vector), groups, facets, recommendations, clusters."""

from __future__ import annotations

from flask import Blueprint

from schemas.api.search import (
    ClusterRequest,
    FacetRequest,
    GroupByImageForm,
    GroupRequest,
    RecommendRequest,
    SearchResults,
    SimilarByImageForm,
    SimilarByItem,
    SimilarByVector,
)
from schemas.points import PayloadFilter
from schemas.queries import ClusterResult, FacetResult, GroupPage, GroupQuery, SimilarityQuery
from schemas.settings import ApiRole
from search_api.api.common import check_limit, embed_image, model_for, read_upload
from search_api.api.openapi import API_PREFIX, endpoint
from search_api.queries.similar import facet_counts, group_query, recommend_items, run_query
from search_api.web.errors import invalid_field, query_errors
from search_api.web.services import current_services

bp = Blueprint("search", __name__, url_prefix=API_PREFIX)
TAGS = ("search",)
SEARCH = ApiRole.SEARCH


def _similar(
    model_id: str,
    *,
    item_id: str | None = None,
    vector: list[float] | None = None,
    filter: PayloadFilter | None,
    limit: int,
    offset: int,
    score_threshold: float | None,
) -> SearchResults:
    services = current_services()
    query = SimilarityQuery(
        model_id=model_id,
        item_id=item_id,
        vector=vector,
        filter=filter,
        limit=check_limit(limit),
        offset=offset,
        score_threshold=score_threshold,
    )
    with query_errors():
        hits = run_query(services.settings, services.store, query)
    return SearchResults(model_id=model_id, hits=hits)


@bp.post("/similar/image")
@endpoint(SEARCH, SearchResults, errors=(404, 413, 415), tags=TAGS)
def similar_to_image(form: SimilarByImageForm) -> SearchResults:
    """Images like an uploaded image (multipart: `image` file, other fields as form fields)."""
    model_id = model_for(form.model_id)
    image = read_upload(form.image, "image")
    vector = embed_image(current_services(), model_id, image, "image")
    return _similar(
        model_id,
        vector=vector,
        filter=form.filter,
        limit=form.limit,
        offset=form.offset,
        score_threshold=form.score_threshold,
    )


@bp.post("/similar/item")
@endpoint(SEARCH, SearchResults, errors=(404, 415), tags=TAGS)
def similar_to_item(json: SimilarByItem) -> SearchResults:
    """Images like a stored item's image, without re-embedding; the item is left out."""
    return _similar(
        model_for(json.model_id),
        item_id=json.item_id,
        filter=json.filter,
        limit=json.limit,
        offset=json.offset,
        score_threshold=json.score_threshold,
    )


@bp.post("/similar/vector")
@endpoint(SEARCH, SearchResults, errors=(404, 415), tags=TAGS)
def similar_to_vector(json: SimilarByVector) -> SearchResults:
    """Images like a raw embedding (its length must be the model's dimension)."""
    return _similar(
        model_for(json.model_id),
        vector=json.vector,
        filter=json.filter,
        limit=json.limit,
        offset=json.offset,
        score_threshold=json.score_threshold,
    )


@bp.post("/groups")
@endpoint(SEARCH, GroupPage, errors=(404, 415), tags=TAGS)
def groups(json: GroupRequest) -> GroupPage:
    """Best matches of a stored item or a vector, grouped by a payload field; page by cursor."""
    services = current_services()
    if json.item_id is None and json.vector is None:
        raise invalid_field("item_id", "give an item_id or a vector (or use /groups/image)")
    query = GroupQuery.model_validate({**json.model_dump(), "model_id": model_for(json.model_id)})
    with query_errors():
        return group_query(services.settings, services.store, query)


@bp.post("/groups/image")
@endpoint(SEARCH, GroupPage, errors=(404, 413, 415), tags=TAGS)
def groups_by_image(form: GroupByImageForm) -> GroupPage:
    """Best matches of an uploaded image, grouped by a payload field; page by cursor."""
    services = current_services()
    model_id = model_for(form.model_id)
    image = read_upload(form.image, "image")
    vector = embed_image(services, model_id, image, "image")
    fields = form.model_dump(exclude={"image", "model_id"})
    query = GroupQuery.model_validate({**fields, "model_id": model_id, "vector": vector})
    with query_errors():
        return group_query(services.settings, services.store, query)


@bp.post("/facets")
@endpoint(SEARCH, FacetResult, errors=(404, 415), tags=TAGS)
def facets(json: FacetRequest) -> FacetResult:
    """How many points have each value of a payload field, among those matching a filter."""
    services = current_services()
    check_limit(json.limit)
    query = json.model_copy(update={"model_id": model_for(json.model_id)})
    with query_errors():
        return facet_counts(services.store, query)


@bp.post("/recommend")
@endpoint(SEARCH, SearchResults, errors=(404, 415), tags=TAGS)
def recommend(json: RecommendRequest) -> SearchResults:
    """Items like the positive example items and unlike the negative ones (examples left out)."""
    services = current_services()
    check_limit(json.limit)
    model_id = model_for(json.model_id)
    with query_errors():
        hits = recommend_items(services.store, json.model_copy(update={"model_id": model_id}))
    return SearchResults(model_id=model_id, hits=hits)


@bp.post("/clusters")
@endpoint(SEARCH, ClusterResult, errors=(404, 415), tags=TAGS)
def clusters(json: ClusterRequest) -> ClusterResult:
    """Cluster the points matching a filter (k-means or HDBSCAN) and map them to 2-D."""
    # Imported here: scikit-learn takes most of a second to import, and only this needs it.
    from search_api.queries.clusters import cluster_items

    services = current_services()
    maximum = services.settings.api.max_cluster_points
    if json.max_points > maximum:
        raise invalid_field("max_points", f"at most {maximum} (LOOKALIKE_API__MAX_CLUSTER_POINTS)")
    query = json.model_copy(update={"model_id": model_for(json.model_id)})
    with query_errors():
        return cluster_items(services.store, query)
