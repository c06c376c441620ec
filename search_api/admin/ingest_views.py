"""Ingestion: queue depth, throughput, dead letters with retry, collections, uploads to watch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ingest.state.batches import Batch, BatchEntry, Batches, BatchRefusal
from ingest.state.throughput import WINDOW_MINUTES, Throughput, cached_measure
from ingest.store.current import current_model_id
from schemas.events import EventState
from search_api.admin.blueprint import back_to, bp, services
from search_api.admin.cards import item_url
from search_api.admin.problems import attempt, problem_of, wants_json
from search_api.admin.uploads import UploadedFile, plan_upload
from search_api.producer.uploads import queue_uploads

MAX_DEAD_LETTERS_SHOWN = 200
_BLOB = re.compile(r"blob://([0-9a-f]{64})")


@dataclass(frozen=True)
class QueueStats:
    """The queue right now."""

    depth: int
    dead_letters: int
    throughput: Throughput


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter as the page lists it."""

    event_id: str
    item_id: str | None
    task: str
    reason: str
    message: str
    failed_at: datetime
    preview: str | None  # URL of the uploaded image, when it is in the blob store


def blob_preview_url(uri: Any) -> str | None:
    """A preview of a blob:// image, or None for other sources."""
    found = _BLOB.fullmatch(uri) if isinstance(uri, str) else None
    return url_for("admin_ui.blob_preview", digest=found.group(1)) if found else None


def queue_stats() -> QueueStats:
    """Depth, dead letters and done events per minute."""
    svc = services()
    return QueueStats(
        depth=svc.publisher.queue_depth(),
        dead_letters=svc.tracker.dead_letter_count(),
        throughput=cached_measure(svc.redis, svc.settings.collection_prefix),
    )


def dead_letters() -> list[DeadLetterRow]:
    """The newest dead letters first."""
    letters = services().tracker.dead_letters()
    rows = []
    for event_id, letter in reversed(letters[-MAX_DEAD_LETTERS_SHOWN:]):
        item_id = letter.event.get("item_id")
        rows.append(
            DeadLetterRow(
                event_id=event_id,
                item_id=item_id if isinstance(item_id, str) else None,
                task=letter.task,
                reason=letter.reason,
                message=letter.message,
                failed_at=letter.failed_at,
                preview=blob_preview_url(letter.event.get("image_uri")),
            )
        )
    return rows


def _batches() -> Batches:
    svc = services()
    return svc.batches


@bp.get("/ingestion")
def ingestion() -> str:
    """Queue, throughput, dead letters, collections and the upload form."""
    svc = services()
    return render_template(
        "admin/ingestion.html",
        active="admin_ui.ingestion",
        stats=attempt(queue_stats),
        letters=attempt(dead_letters),
        collections=attempt(svc.store.collections),
        installed=attempt(svc.registry.installed),
        settings=svc.settings,
        window=WINDOW_MINUTES,
    )


@bp.get("/ingestion/stats.json")
def ingestion_stats() -> Response:
    """The queue numbers, for the page's periodic refresh."""
    stats = queue_stats()
    return jsonify(
        {
            "queue_depth": stats.depth,
            "dead_letters": stats.dead_letters,
            "per_second": {
                str(m): round(stats.throughput.per_second(m), 3) for m in (1, 5, WINDOW_MINUTES)
            },
            "per_minute": list(stats.throughput.per_minute),
        }
    )


@bp.post("/ingestion/uploads")
def upload() -> Response:
    """Queue the good images of an upload (metadata from an optional CSV), then follow them;
    bad ones are refused one by one with their reasons, as the API answers them."""
    svc = services()
    files = [
        UploadedFile(part.filename or "", part.read())
        for part in request.files.getlist("images")
        if part.filename
    ]
    catalog_part = request.files.get("catalog")
    catalog = catalog_part.read() if catalog_part is not None and catalog_part.filename else None
    plan = plan_upload(svc.settings, files, catalog)
    back = url_for("admin_ui.ingestion") + "#upload"
    if plan.errors:
        flash("Nothing was uploaded: " + " ".join(plan.errors), "error")
        return redirect(back, code=303)
    outcome = queue_uploads(
        plan.images,
        limits=svc.settings.images,
        blob_put=svc.blobs.put,
        publisher=svc.publisher,
    )
    refused = [
        BatchRefusal(
            filename=plan.filenames[r.image.index],
            item_id=r.image.item_id,
            reason=r.error.reason.value,
            message=problem_of(r.error).message,
        )
        for r in outcome.refused
    ]
    if not outcome.queued:
        listed = " ".join(f"{r.filename}: {r.message}" for r in refused)
        flash(f"Nothing was uploaded: {listed}", "error")
        return redirect(back, code=303)
    entries = [
        BatchEntry(
            event_id=q.event.event_id,
            item_id=q.event.item_id,
            filename=plan.filenames[q.image.index],
            image_uri=q.event.image_uri,
        )
        for q in outcome.queued
    ]
    batch = _batches().save(entries, refused, plan.notes)
    flash(
        f"{len(entries)} image(s) queued"
        + (f", {len(refused)} refused (see below)." if refused else "."),
        "info",
    )
    return redirect(url_for("admin_ui.batch", batch_id=batch.batch_id), code=303)


@dataclass(frozen=True)
class BatchRow:
    """One upload of a batch and where its event is."""

    entry: BatchEntry
    status: str  # queued, done, failed, unknown
    reason: str | None
    message: str | None
    retryable: bool
    preview: str | None
    item_url: str

    def as_json(self) -> dict[str, Any]:
        """For the page's polling."""
        return {
            "event_id": self.entry.event_id,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "retryable": self.retryable,
            "item_url": self.item_url,
        }


def _rows(batch: Batch) -> list[BatchRow]:
    svc = services()
    ids = [entry.event_id for entry in batch.entries]
    states: list[EventState | None] = svc.tracker.statuses(ids)
    lettered = svc.tracker.have_dead_letters(ids)
    model_id = current_model_id(svc.settings, svc.store)
    return [
        BatchRow(
            entry=entry,
            status=state.status.value if state else "unknown",
            reason=state.reason if state else None,
            message=state.message if state else None,
            retryable=bool(has_letter),
            preview=blob_preview_url(entry.image_uri),
            item_url=item_url(entry.item_id, model_id),
        )
        for entry, state, has_letter in zip(batch.entries, states, lettered, strict=True)
    ]


def _batch(batch_id: str) -> Batch:
    batch = _batches().get(batch_id)
    if batch is None:
        abort(404, f"No upload {batch_id[:64]!r} (uploads are followed for a week).")
    return batch


@bp.get("/ingestion/batches/<batch_id>")
def batch(batch_id: str) -> str:
    """An upload's images and their events, updated as workers take them."""
    found = _batch(batch_id)
    return render_template(
        "admin/batch.html", active="admin_ui.ingestion", batch=found, rows=_rows(found)
    )


@bp.get("/ingestion/batches/<batch_id>.json")
def batch_status(batch_id: str) -> Response:
    """An upload's event statuses, for the page's polling."""
    rows = _rows(_batch(batch_id))
    counts = {status: sum(r.status == status for r in rows) for status in ("queued", "done")}
    failed = sum(r.status == "failed" for r in rows)
    return jsonify(
        {
            "entries": [row.as_json() for row in rows],
            "done": counts["done"],
            "failed": failed,
            "queued": counts["queued"],
            "finished": counts["queued"] == 0,
        }
    )


def _retried(message: str, ok: bool) -> Response:
    if wants_json():
        response = jsonify({"message": message, "retried": ok})
        response.status_code = 202 if ok else 404
        return response
    flash(message, "info" if ok else "error")
    return redirect(back_to(url_for("admin_ui.ingestion") + "#dead-letters"), code=303)


@bp.post("/ingestion/deadletters/<event_id>/retry")
def retry_dead_letter(event_id: str) -> Response:
    """Put one dead letter back on the queue as it was."""
    ok = services().publisher.retry_dead_letter(event_id[:200])
    if ok:
        return _retried(f"Event {event_id} queued again.", True)
    return _retried(f"No dead letter {event_id[:200]!r}: it was retried or purged already.", False)


@bp.post("/ingestion/deadletters/retry")
def retry_all_dead_letters() -> Response:
    """Put every dead letter back on the queue."""
    publisher = services().publisher
    targets = [event_id for event_id, _ in publisher.tracker.dead_letters()]
    retried = sum(publisher.retry_dead_letter(event_id) for event_id in targets)
    return _retried(f"{retried} dead letter(s) queued again.", True)
