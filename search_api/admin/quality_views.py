"""The Quality page: each installed model's last evaluation (`lookalike evaluate`), read-only."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, render_template, send_file
from werkzeug.wrappers import Response

from ingest.evaluation.report import last_evaluation, last_picture
from schemas.evaluation import EvaluationRecord
from schemas.models import ModelManifest, is_model_id
from search_api.admin.blueprint import bp, services


@dataclass(frozen=True)
class ModelQuality:
    """One installed model and its last evaluation, if any."""

    manifest: ModelManifest
    evaluation: EvaluationRecord | None
    has_picture: bool


@bp.get("/quality")
def quality() -> str:
    """Every installed model with the numbers and picture of its last evaluation."""
    registry = services().registry
    rows = [
        ModelQuality(
            manifest,
            last_evaluation(registry, manifest.spec.id),
            last_picture(registry, manifest.spec.id) is not None,
        )
        for manifest in registry.installed()
    ]
    return render_template("admin/quality.html", rows=rows)


@bp.get("/quality/<model_id>.svg")
def quality_picture(model_id: str) -> Response:
    """The precision-recall curve and score histograms of a model's last evaluation."""
    if not is_model_id(model_id):  # never a path outside the models directory
        abort(404)
    picture = last_picture(services().registry, model_id)
    if picture is None:
        abort(404)
    return send_file(picture, mimetype="image/svg+xml", max_age=0)
