"""Reviewing a collection's duplicate groups: start a job, watch it, page its groups.

A job's groups are stored as found at its threshold; the page's slider previews a stricter
threshold by hiding members scoring below it (in the browser, on the stored scores). A lower
threshold needs a new job. "Not a duplicate" applies at once (groups are read through the
dismissed pairs); "delete" queues the item's removal, and the page greys out images that are
no longer in the collection.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ingest.duplicates.thresholds import resolve_threshold
from schemas.duplicates import DuplicateGroup, DuplicateJob, DuplicateJobStatus, DuplicatePage
from search_api.admin.blueprint import (
    bp,
    chosen_model,
    parse_float,
    parse_int,
    services,
    with_query,
)
from search_api.admin.cards import Card
from search_api.admin.problems import Outcome, attempt
from search_api.admin.search_views import model_options
from search_api.producer.jobs import enqueue_find_duplicates
from search_api.web.errors import ApiError

GROUPS_PER_PAGE = 10
MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class GroupView:
    """A duplicate group as cards: the seed first, then its members best first."""

    group_id: str
    seed: Card
    members: list[Card]
    present: frozenset[str]  # point ids still in the collection

    @property
    def size(self) -> int:
        """Images in the group."""
        return 1 + len(self.members)


@dataclass(frozen=True)
class GroupsPage:
    """A page of a finished job's groups."""

    page: DuplicatePage
    groups: list[GroupView]
    next_url: str | None
    first_url: str | None


def _view(group: DuplicateGroup, model_id: str, present: frozenset[str]) -> GroupView:
    seed = Card(group.seed.point_id, group.seed.item_id, model_id, group.seed.payload)
    members = [Card(m.point_id, m.item_id, model_id, m.payload, m.score) for m in group.members]
    return GroupView(group.group_id, seed, members, present)


def _groups(job: DuplicateJob, offset: int) -> GroupsPage:
    svc = services()
    page = svc.duplicates.page(job.job_id, offset=offset, limit=GROUPS_PER_PAGE)
    ids = [p for g in page.groups for p in (g.seed.point_id, *(m.point_id for m in g.members))]
    # Groups are stored as found: images deleted since are shown greyed out, not as live.
    present = frozenset(p.id for p in svc.store.retrieve(job.model_id, ids)) if ids else frozenset()
    base = url_for("admin_ui.duplicates")
    pairs = [("model", job.model_id), ("job", job.job_id)]
    next_url = None
    if page.next_offset is not None:
        next_url = with_query(base, [*pairs, ("offset", str(page.next_offset))])
    return GroupsPage(
        page,
        [_view(group, job.model_id, present) for group in page.groups],
        next_url=next_url,
        first_url=with_query(base, pairs) if offset > 0 else None,
    )


@bp.get("/duplicates")
def duplicates() -> str:
    """Duplicate groups of a model's collection, with a job to find them."""
    svc = services()
    model_id = chosen_model(request.args.get("model"))
    default_threshold = attempt(functools.partial(resolve_threshold, svc.registry, model_id, None))
    jobs = attempt(functools.partial(svc.duplicates.jobs, model_id))
    job: DuplicateJob | None = None
    requested = request.args.get("job")
    if requested:
        job = svc.duplicates.job(requested[:100])
        if job is None or job.model_id != model_id:
            raise ApiError(404, "job_not_found", f"No duplicate job {requested[:100]!r}.")
    elif jobs.value:
        job = jobs.value[0]
    groups: Outcome[GroupsPage] = Outcome()
    if job is not None and job.status is DuplicateJobStatus.DONE:
        offset = parse_int(request.args.get("offset"), 0, low=0, high=MAX_OFFSET)
        groups = attempt(functools.partial(_groups, job, offset))
    return render_template(
        "admin/duplicates.html",
        active="admin_ui.duplicates",
        model_id=model_id,
        models=model_options(model_id),
        default_threshold=default_threshold,
        jobs=jobs,
        job=job,
        groups=groups,
        running=job is not None
        and job.status in (DuplicateJobStatus.QUEUED, DuplicateJobStatus.RUNNING),
    )


@bp.post("/duplicates/jobs")
def start_duplicate_job() -> Response:
    """Start finding every duplicate group of the collection (a worker runs it)."""

    svc = services()
    model_id = chosen_model(request.form.get("model"))
    back = url_for("admin_ui.duplicates", model=model_id)
    raw = request.form.get("threshold")
    threshold = parse_float(raw)
    if threshold is None and raw:
        flash(f"The threshold {raw[:20]!r} is not a number.", "error")
        return redirect(back, code=303)
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        flash("The threshold is a cosine similarity: between -1 and 1.", "error")
        return redirect(back, code=303)
    resolved = resolve_threshold(svc.registry, model_id, threshold)
    svc.store.count(model_id)  # no collection: say so now, not as a failed job
    job_id = enqueue_find_duplicates(
        svc.celery,
        svc.duplicates,
        model_id,
        threshold=resolved,
        transitive=request.form.get("transitive") == "on",
    )
    flash(f"Duplicate search started at threshold {resolved:.3f}.", "info")
    return redirect(url_for("admin_ui.duplicates", model=model_id, job=job_id), code=303)


@bp.get("/duplicates/jobs/<job_id>.json")
def duplicate_job_status(job_id: str) -> Response:
    """A job's status and progress, for the page's polling."""
    job = services().duplicates.job(job_id[:100])
    if job is None:
        raise ApiError(404, "job_not_found", f"No duplicate job {job_id[:100]!r}.")
    return jsonify(job.model_dump(mode="json"))
