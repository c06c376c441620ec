"""An evaluation as people read it: a table, JSON, and a picture (precision-recall, histograms).

Each model's last evaluation is kept next to its manifest (``evaluation.json`` and
``evaluation.svg``), where the API and the admin page's Quality view read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ingest.errors import LookalikeError
from ingest.evaluation.run import ModelEvaluation
from ingest.models.registry import ModelRegistry
from schemas.evaluation import DuplicateNumbers, EvaluationRecord, RetrievalNumbers

EVALUATION_FILE = "evaluation.json"
PICTURE_FILE = "evaluation.svg"
HISTOGRAM_BINS = 40


def evaluation_record(evaluation: ModelEvaluation, *, source: str) -> EvaluationRecord:
    """The numbers of one run, as they are kept and served."""
    retrieval, duplicates = evaluation.retrieval, evaluation.duplicates
    return EvaluationRecord(
        model_id=evaluation.model_id,
        fingerprint=evaluation.fingerprint,
        tta=evaluation.tta,
        source=source,
        evaluated_at=datetime.now(UTC),
        images=evaluation.images,
        failed_images=evaluation.failures,
        retrieval=RetrievalNumbers(
            queries=retrieval.queries,
            skipped_queries=retrieval.skipped,
            map_at={str(k): v for k, v in retrieval.map_at.items()},
            precision_at={str(k): v for k, v in retrieval.precision_at.items()},
            top_k_accuracy={str(k): v for k, v in retrieval.top_k_accuracy.items()},
        ),
        duplicates=DuplicateNumbers(
            threshold=duplicates.threshold,
            precision=duplicates.precision,
            recall=duplicates.recall,
            f1=duplicates.f1,
            duplicate_pairs=duplicates.duplicate_pairs,
            distinct_pairs=duplicates.distinct_pairs,
            calibrated_threshold=duplicates.calibrated_threshold,
            margin=duplicates.margin,
            recall_at_precision_99=duplicates.recall_at_precision_99,
            curve=duplicates.curve,
        ),
    )


def table(evaluations: Sequence[ModelEvaluation]) -> str:
    """One row per model (and TTA setting): the retrieval and duplicate numbers side by side."""
    ks = evaluations[0].retrieval.ks
    head = ["model", "tta"]
    head += [f"mAP@{k}" for k in ks] + [f"P@{k}" for k in ks] + [f"top-{k}" for k in ks]
    head += ["dup thr", "dup P", "dup R", "dup F1", "R@P99", "calibrated"]
    rows = [head]
    for e in evaluations:
        r, d = e.retrieval, e.duplicates
        row = [e.model_id, "yes" if e.tta else "no"]
        row += [f"{r.map_at[k]:.3f}" for k in ks] + [f"{r.precision_at[k]:.3f}" for k in ks]
        row += [f"{r.top_k_accuracy[k]:.3f}" for k in ks]
        row += [f"{d.threshold:.3f}", f"{d.precision:.3f}", f"{d.recall:.3f}", f"{d.f1:.3f}"]
        row += [f"{d.recall_at_precision_99:.3f}", f"{d.calibrated_threshold:.3f}"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def write_picture(evaluations: Sequence[ModelEvaluation], target: Path) -> Path:
    """Precision-recall curves and score histograms (PNG or SVG, by the file's suffix)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no screen: draw to a file
        from matplotlib import pyplot
    except ImportError as error:
        raise LookalikeError(
            "drawing the evaluation needs matplotlib: pip install 'lookalike[eval]'"
        ) from error
    figure, (curves, histograms) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    every_score = [
        score for e in evaluations for score in e.distinct_pair_scores + e.duplicate_pair_scores
    ]
    # One set of bins for every histogram, each scaled to fractions of its own pairs, so that
    # a few hundred duplicate pairs and many thousand distinct ones read on one axis.
    bins = np.linspace(min(every_score), 1.0, HISTOGRAM_BINS + 1)
    for e in evaluations:
        name = f"{e.model_id}{' +TTA' if e.tta else ''}"
        recall = [point[2] for point in e.duplicates.curve]
        precision = [point[1] for point in e.duplicates.curve]
        curves.plot(recall, precision, label=name)
        for scores, kind in (
            (e.distinct_pair_scores, "distinct"),
            (e.duplicate_pair_scores, "duplicates"),
        ):
            weights = np.full(len(scores), 1.0 / max(1, len(scores)))
            histograms.hist(scores, bins=bins, weights=weights, alpha=0.45, label=f"{name}: {kind}")
    curves.set(xlabel="recall", ylabel="precision", title="Near-duplicates: precision-recall")
    curves.set_xlim(0, 1.02)
    curves.set_ylim(0, 1.02)
    curves.legend(fontsize=8)
    histograms.set(xlabel="cosine similarity", ylabel="share of pairs", title="Pair scores")
    histograms.legend(fontsize=7)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    pyplot.close(figure)
    return target


def save_last(
    registry: ModelRegistry, evaluation: ModelEvaluation, record: EvaluationRecord
) -> Path | None:
    """Keep a model's last evaluation next to its manifest; its picture too if it can be drawn."""
    directory = registry.model_dir(evaluation.model_id)
    (directory / EVALUATION_FILE).write_text(record.model_dump_json(indent=2))
    picture = directory / PICTURE_FILE
    picture.unlink(missing_ok=True)  # a picture of an earlier run would not match the numbers
    try:
        return write_picture([evaluation], picture)
    except LookalikeError:
        return None  # without matplotlib (the `eval` extra) the numbers are kept alone


def last_evaluation(registry: ModelRegistry, model_id: str) -> EvaluationRecord | None:
    """A model's last evaluation, if it has been evaluated."""
    path = registry.model_dir(model_id) / EVALUATION_FILE
    if not path.is_file():
        return None
    return EvaluationRecord.model_validate_json(path.read_text())


def last_picture(registry: ModelRegistry, model_id: str) -> Path | None:
    """The picture of a model's last evaluation, if one was drawn."""
    path = registry.model_dir(model_id) / PICTURE_FILE
    return path if path.is_file() else None
