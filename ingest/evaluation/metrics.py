"""Retrieval and near-duplicate metrics over already-ranked results, as DINOv2's retrieval code.

Retrieval (``retrieval_scores``), per query q with label y and ranked gallery labels l_1, l_2, ...
(the query itself already left out), R = the number of gallery items labelled y:

- rel_i = 1 when l_i == y, else 0.
- P@k = (sum_{i=1..k} rel_i) / k, with k as asked even when the ranked list is shorter (a
  gallery smaller than k): the missing ranks count as misses.
- AP@k = (1 / min(k, R)) * sum_{i=1..k} P@i * rel_i; mAP@k is its mean over scored queries.
- top-k accuracy = the fraction of scored queries with at least one rel_i = 1 in the first k.
- A query with R = 0 (its label has one member, the query) has nothing to find: it is skipped
  and counted, not scored as 0.

Ties are the caller's business: the ranking is taken as given, in the order given.

Near-duplicates (``duplicate_scores``), over the similarity scores of pairs known to be
duplicates and pairs known to be distinct: a pair is predicted duplicate when its score is at
least the threshold; precision = TP / (TP + FP), 1.0 when nothing is predicted (no false
alarm was raised); recall = TP / (number of duplicate pairs); F1 = their harmonic mean, 0 when
both are 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.duplicates.thresholds import calibrate_threshold

HIGH_PRECISION = 0.99


@dataclass(frozen=True)
class RetrievalScores:
    """mAP@k, precision@k and top-k accuracy over the queries that have a relevant item."""

    ks: tuple[int, ...]
    map_at: dict[int, float]
    precision_at: dict[int, float]
    top_k_accuracy: dict[int, float]
    queries: int  # queries scored
    skipped: int  # queries whose label has no other item in the gallery (nothing to find)


@dataclass(frozen=True)
class DuplicateScores:
    """Near-duplicate detection at a threshold, the precision-recall curve, and calibration."""

    threshold: float
    precision: float
    recall: float
    f1: float
    duplicate_pairs: int
    distinct_pairs: int
    curve: list[tuple[float, float, float]]  # (threshold, precision, recall), thresholds ascending
    calibrated_threshold: float
    margin: float  # lowest duplicate score minus highest distinct score (negative: they overlap)
    recall_at_precision_99: float  # best recall among curve points with precision >= 0.99


def _normalised_ks(ks: Sequence[int]) -> tuple[int, ...]:
    if not ks:
        raise ValueError("ks is empty: give at least one cut-off k")
    bad = [k for k in ks if k < 1]
    if bad:
        raise ValueError(f"every k must be a positive integer, got {bad}")
    return tuple(sorted(set(ks)))


def retrieval_scores(
    ranked_labels: Sequence[Sequence[str]],
    query_labels: Sequence[str],
    relevant_counts: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> RetrievalScores:
    """mAP@k, P@k and top-k accuracy of ranked gallery labels (definitions in the module doc)."""
    cutoffs = _normalised_ks(ks)
    if not query_labels:
        raise ValueError("no queries: query_labels is empty")
    if not len(ranked_labels) == len(query_labels) == len(relevant_counts):
        raise ValueError(
            "ranked_labels, query_labels and relevant_counts must have one entry per query, got "
            f"{len(ranked_labels)}, {len(query_labels)} and {len(relevant_counts)}"
        )
    deepest = cutoffs[-1]
    ap_rows: list[list[float]] = []
    precision_rows: list[list[float]] = []
    hit_rows: list[list[bool]] = []
    skipped = 0
    for index, (ranked, label, relevant) in enumerate(
        zip(ranked_labels, query_labels, relevant_counts, strict=True)
    ):
        if relevant < 0:
            raise ValueError(f"query {index}: relevant_counts is negative ({relevant})")
        rel = np.array([candidate == label for candidate in ranked], dtype=np.float64)
        if rel.sum() > relevant:
            # More matches than items of that label: the counts and the rankings disagree, and
            # AP would exceed 1.
            raise ValueError(
                f"query {index}: {int(rel.sum())} ranked items share its label "
                f"but relevant_counts says {relevant}"
            )
        if relevant == 0:
            skipped += 1
            continue
        # Pad to the deepest k with misses so that P@k divides by k even for a small gallery.
        rel = np.pad(rel[:deepest], (0, max(0, deepest - len(rel))))
        hits_so_far = np.cumsum(rel)
        precision_at_rank = hits_so_far / np.arange(1, deepest + 1)
        gains = np.cumsum(precision_at_rank * rel)
        ap_rows.append([float(gains[k - 1]) / min(k, relevant) for k in cutoffs])
        precision_rows.append([float(precision_at_rank[k - 1]) for k in cutoffs])
        hit_rows.append([bool(hits_so_far[k - 1] > 0) for k in cutoffs])
    if not ap_rows:
        raise ValueError(
            "no query has another image of its label in the gallery: nothing to evaluate"
        )

    def mean_by_k(rows: Sequence[Sequence[float]]) -> dict[int, float]:
        means = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
        return {k: float(value) for k, value in zip(cutoffs, means, strict=True)}

    return RetrievalScores(
        ks=cutoffs,
        map_at=mean_by_k(ap_rows),
        precision_at=mean_by_k(precision_rows),
        top_k_accuracy=mean_by_k([[float(hit) for hit in row] for row in hit_rows]),
        queries=len(ap_rows),
        skipped=skipped,
    )


def duplicate_scores(
    duplicate: Sequence[float], distinct: Sequence[float], threshold: float
) -> DuplicateScores:
    """Precision, recall and F1 at a threshold, the PR curve, margin and calibrated threshold."""
    if not duplicate or not distinct:
        raise ValueError(
            "duplicate evaluation needs at least one duplicate and one distinct pair, got "
            f"{len(duplicate)} duplicate and {len(distinct)} distinct"
        )
    duplicate_array = np.asarray(duplicate, dtype=np.float64)
    distinct_array = np.asarray(distinct, dtype=np.float64)
    true_positives = int(np.count_nonzero(duplicate_array >= threshold))
    false_positives = int(np.count_nonzero(distinct_array >= threshold))
    predicted = true_positives + false_positives
    # Nothing predicted means no false alarm: precision 1.0, as sklearn's zero_division=1.
    precision = true_positives / predicted if predicted else 1.0
    recall = true_positives / len(duplicate_array)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    labels = np.concatenate([np.ones(len(duplicate_array)), np.zeros(len(distinct_array))])
    # Imported here: scikit-learn takes most of a second to import, and every `lookalike`
    # command (and the web app) imports this module; only a duplicate evaluation needs it.
    from sklearn.metrics import precision_recall_curve

    precisions, recalls, thresholds = precision_recall_curve(
        labels, np.concatenate([duplicate_array, distinct_array])
    )
    # sklearn appends a (precision 1, recall 0) end point with no threshold: leave it out.
    curve = [
        (float(cut), float(p), float(r))
        for cut, p, r in zip(thresholds, precisions[:-1], recalls[:-1], strict=True)
    ]
    recall_at_precision_99 = max((r for _, p, r in curve if p >= HIGH_PRECISION), default=0.0)
    return DuplicateScores(
        threshold=threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        duplicate_pairs=len(duplicate_array),
        distinct_pairs=len(distinct_array),
        curve=curve,
        calibrated_threshold=calibrate_threshold(duplicate, distinct),
        margin=float(duplicate_array.min() - distinct_array.max()),
        recall_at_precision_99=recall_at_precision_99,
    )
