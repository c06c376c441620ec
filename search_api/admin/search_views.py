"""Search (by image, by item, or browsing), filters with facet counts, groups, item pages,
and the two review actions shared by every page: "not a duplicate" and "delete"."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from flask import flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ingest.duplicates.matches import near_duplicates
from ingest.duplicates.thresholds import resolve_threshold
from ingest.images.decode import decode_image
from schemas.events import DeleteEvent
from schemas.points import FacetCount, MatchCondition, PayloadFilter, StoredPoint
from schemas.queries import FacetQuery, GroupQuery, SimilarityQuery
from search_api.admin.blueprint import (
    back_to,
    bp,
    chosen_model,
    form_text,
    parse_float,
    services,
    with_query,
)
from search_api.admin.cards import Card
from search_api.admin.media import query_images, query_vector
from search_api.admin.problems import Outcome, Problem, attempt, problem_of, wants_json
from search_api.admin.state import SearchState
from search_api.queries.similar import facet_counts, group_query, run_query
from search_api.web.errors import ApiError

# Checking an upload decodes it at this size: enough to know it is a whole, sane picture.
CHECK_DRAFT_SIZE = 224
FACET_VALUES = 20
NEIGHBOURS = 12
ITEM_POINTS = 64
NEAR_DUPLICATES = 24


@dataclass(frozen=True)
class ModelOption:
    """A model to search with, and how many images its collection holds."""

    model_id: str
    points: int | None


def model_options(current: str) -> list[ModelOption]:
    """Every collection's model (the current one even if it has no collection yet)."""
    try:
        options = [ModelOption(c.model_id, c.points) for c in services().store.collections()]
    except Exception:  # the page says what is wrong elsewhere; the picker still works
        options = []
    if current not in {option.model_id for option in options}:
        options.insert(0, ModelOption(current, None))
    return options


@dataclass(frozen=True)
class ResultPage:
    """One page of results and the links to the pages around it."""

    mode: Literal["similar", "grouped", "browse"]
    cards: list[Card]
    next_url: str | None = None
    previous_url: str | None = None
    first_url: str | None = None
    note: str | None = None


def search_url(state: SearchState, *, paging: bool = True) -> str:
    """The search page showing this state."""
    return with_query(url_for("admin_ui.search"), state.pairs(paging=paging))


def _only_item(item_id: str) -> PayloadFilter:
    return PayloadFilter(must=[MatchCondition(key="item_id", value=item_id)])


def _query_vector(state: SearchState) -> list[float] | None:
    if state.image is None:
        return None
    data = query_images().get(state.image)
    if data is None:
        raise ApiError(
            404,
            "not_found",
            "The uploaded query image has expired (they are kept for a day): upload it again.",
        )
    return query_vector(state.model_id, state.image, data)


def _browse(state: SearchState, size: int) -> ResultPage:
    points, after = services().store.scroll(
        state.model_id, filter=state.payload_filter(), limit=size, offset=state.after
    )
    return ResultPage(
        "browse",
        [Card(p.id, p.item_id, state.model_id, p.payload) for p in points],
        next_url=search_url(replace(state, after=after)) if after else None,
        first_url=search_url(state.first_page()) if state.after else None,
    )


def _grouped(state: SearchState, size: int, vector: list[float] | None) -> ResultPage:
    assert state.group_by is not None  # noqa: S101 (only called with grouping)
    svc = services()
    query = GroupQuery(
        model_id=state.model_id,
        item_id=state.item_id,
        vector=vector,
        group_by=state.group_by,
        group_size=1,
        limit=size,
        cursor=state.cursor,
        filter=state.payload_filter(),
    )
    page = group_query(svc.settings, svc.store, query)
    cards = [
        Card(hit.id, hit.item_id, state.model_id, hit.payload, hit.score, f"{group.key}")
        for group in page.groups
        for hit in group.hits[:1]
    ]
    note = None
    if page.cursor_limit_reached:
        note = "Paging stops here: narrow the filters to see further groups."
    return ResultPage(
        "grouped",
        cards,
        next_url=search_url(replace(state, cursor=page.next_cursor)) if page.next_cursor else None,
        first_url=search_url(state.first_page()) if state.cursor else None,
        note=note,
    )


def _similar(state: SearchState, size: int, vector: list[float] | None) -> ResultPage:
    svc = services()
    query = SimilarityQuery(
        model_id=state.model_id,
        item_id=state.item_id,
        vector=vector,
        filter=state.payload_filter(),
        limit=size + 1,  # one more than shown tells whether a next page exists
        offset=(state.page - 1) * size,
    )
    hits = run_query(svc.settings, svc.store, query)
    cards = [Card(h.id, h.item_id, state.model_id, h.payload, h.score) for h in hits[:size]]
    return ResultPage(
        "similar",
        cards,
        next_url=search_url(replace(state, page=state.page + 1)) if len(hits) > size else None,
        previous_url=search_url(replace(state, page=state.page - 1)) if state.page > 1 else None,
    )


def results(state: SearchState) -> ResultPage:
    """The results of a search state: ranked, grouped, or the collection in id order."""
    size = services().settings.admin.page_size
    if not state.has_query:
        return _browse(state, size)
    vector = _query_vector(state)
    if state.group_by:
        return _grouped(state, size, vector)
    return _similar(state, size, vector)


def facet(state: SearchState, key: str) -> list[FacetCount]:
    """Counts per value of a field under the other filters (so alternatives stay visible)."""
    query = FacetQuery(
        model_id=state.model_id,
        key=key,
        filter=state.payload_filter(without=key),
        limit=FACET_VALUES,
    )
    counts = facet_counts(services().store, query).counts
    shown = {str(count.value) for count in counts}
    # A selected value with no match any more stays listed, so it can be unselected.
    missing = [v for v in state.facets.get(key, ()) if v not in shown]
    return counts + [FacetCount(value=value, count=0) for value in missing]


@bp.get("/")
def search() -> str:
    """Search by image or item, filter with facet counts, group, page."""
    config = services().settings.admin
    model_id = chosen_model(request.args.get("model"))
    state = SearchState.parse(request.args, model_id, config)
    facets = {name: attempt(functools.partial(facet, state, name)) for name in config.facet_fields}
    return render_template(
        "admin/search.html",
        active="admin_ui.search",
        state=state,
        config=config,
        models=model_options(model_id),
        results=attempt(functools.partial(results, state)),
        facets=facets,
        search_url=search_url,
    )


@bp.post("/search/image")
def search_by_image() -> Response:
    """Keep the uploaded query image, then show its results (a GET page that can be paged)."""
    settings = services().settings
    model_id = chosen_model(request.form.get("model"))
    state = SearchState.parse(request.form, model_id, settings.admin)
    state = replace(state.first_page(), item_id=None, image=None)
    upload = request.files.get("image")
    data = upload.read() if upload is not None else b""
    if upload is None or not upload.filename:
        flash("Choose an image file to search with (or drop one on the page).", "error")
        return redirect(search_url(state), code=303)
    if not data:
        flash(f"The file {upload.filename!r} is empty.", "error")
        return redirect(search_url(state), code=303)
    try:
        decode_image(data, settings.images, draft_size=CHECK_DRAFT_SIZE)
    except Exception as error:
        flash(f"{upload.filename}: {problem_of(error).text}", "error")
        return redirect(search_url(state), code=303)
    digest = query_images().put(data)
    return redirect(search_url(replace(state, image=digest)), code=303)


# --- an item -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NearDuplicate:
    """A near-duplicate of one of the item's images: the pair a reviewer may dismiss."""

    card: Card
    own_point_id: str


@dataclass
class ItemPage:
    """An item's images and payload."""

    item_id: str
    model_id: str
    points: list[StoredPoint]
    threshold: float
    default_threshold: float
    neighbours: Outcome[list[Card]] = field(default_factory=Outcome)
    duplicates: Outcome[list[NearDuplicate]] = field(default_factory=Outcome)


def _neighbours(model_id: str, item_id: str) -> list[Card]:
    svc = services()
    query = SimilarityQuery(model_id=model_id, item_id=item_id, limit=NEIGHBOURS)
    hits = run_query(svc.settings, svc.store, query)
    return [Card(h.id, h.item_id, model_id, h.payload, h.score) for h in hits]


def _near_duplicates(
    model_id: str, item_id: str, points: list[StoredPoint], threshold: float
) -> list[NearDuplicate]:
    """Other items' images above the threshold for any image of this item, best first."""
    svc = services()
    hidden = svc.duplicates.hidden_pairs(model_id)
    best: dict[str, NearDuplicate] = {}
    for own in points:
        for hit in near_duplicates(
            svc.store,
            model_id,
            point_id=own.id,
            threshold=threshold,
            limit=NEAR_DUPLICATES,
            exclude_item_id=item_id,
            hidden=hidden,
        ):
            known = best.get(hit.id)
            if known is None or (known.card.score or 0.0) < hit.score:
                card = Card(hit.id, hit.item_id, model_id, hit.payload, hit.score)
                best[hit.id] = NearDuplicate(card, own.id)
    ranked = sorted(best.values(), key=lambda d: (-(d.card.score or 0.0), d.card.point_id))
    return ranked[:NEAR_DUPLICATES]


@bp.get("/items/<path:item_id>")
def item(item_id: str) -> str:
    """An item: its images, metadata, nearest neighbours and near-duplicates."""
    svc = services()
    model_id = chosen_model(request.args.get("model"))
    points, _ = svc.store.scroll(model_id, filter=_only_item(item_id), limit=ITEM_POINTS)
    if not points:
        raise ApiError(404, "item_not_found", f"No item {item_id!r} in the {model_id} collection.")
    default = resolve_threshold(svc.registry, model_id, None)
    requested = parse_float(request.args.get("threshold"))
    threshold = default if requested is None else max(-1.0, min(1.0, requested))
    page = ItemPage(item_id, model_id, points, threshold, default)
    page.neighbours = attempt(functools.partial(_neighbours, model_id, item_id))
    page.duplicates = attempt(
        functools.partial(_near_duplicates, model_id, item_id, points, threshold)
    )
    return render_template(
        "admin/item.html",
        active="admin_ui.search",
        page=page,
        models=model_options(model_id),
        system_keys=_SYSTEM_KEYS,
    )


_SYSTEM_KEYS = (
    "item_id",
    "image_sha256",
    "source_uri",
    "thumbnail_key",
    "ingested_at",
    "model_fingerprint",
)


# --- review actions ------------------------------------------------------------------------


def _answer(message: str, default: str, **body: Any) -> Response:
    """A script gets JSON; a plain form post is redirected back with the message flashed."""
    if wants_json():
        return jsonify({"message": message, **body})
    flash(message, "info")
    return redirect(back_to(default), code=303)


def _refuse(problem: Problem, default: str) -> Response:
    if wants_json():
        response = jsonify({"error": {"code": problem.code, "message": problem.message}})
        response.status_code = problem.status
        return response
    flash(problem.text, "error")
    return redirect(back_to(default), code=303)


@bp.post("/dismissals")
def dismiss() -> Response:
    """Mark two images as not duplicates: the pair leaves every duplicate result."""
    model_id = chosen_model(request.form.get("model"))
    point_a, point_b = form_text(request.form, "point_a"), form_text(request.form, "point_b")
    default = url_for("admin_ui.duplicates", model=model_id)
    if not point_a or not point_b or point_a == point_b:
        return _refuse(Problem(422, "validation_error", "Choose two different images."), default)
    changed = services().duplicates.mark_not_duplicate(model_id, point_a, point_b)
    message = "Marked as not a duplicate." if changed else "Already marked as not a duplicate."
    return _answer(message, default, changed=changed)


@bp.post("/items/delete")
def delete_item() -> Response:
    """Queue the removal of every image of an item (all collections)."""
    item_id = form_text(request.form, "item_id")
    default = url_for("admin_ui.search")
    if not item_id:
        return _refuse(Problem(422, "validation_error", "Which item should be deleted?"), default)
    event = DeleteEvent(item_id=item_id)
    services().publisher.publish([event])
    message = (
        f"Deletion of item {item_id!r} queued: it leaves the results once a worker applies it."
    )
    return _answer(message, default, event_id=event.event_id, item_id=item_id)
