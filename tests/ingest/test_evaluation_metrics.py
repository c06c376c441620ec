"""Retrieval and near-duplicate metrics on small hand-built rankings and scores."""

from __future__ import annotations

import pytest

from ingest.duplicates.thresholds import calibrate_threshold
from ingest.evaluation.metrics import duplicate_scores, retrieval_scores

# Scores on both sides of 0.65: duplicates 0.9, 0.8 above it, 0.6, 0.5 below; distinct 0.7 above.
OVERLAPPING_DUPLICATES = [0.9, 0.8, 0.6, 0.5]
OVERLAPPING_DISTINCT = [0.7, 0.3]


def test_perfect_ranking_scores_one() -> None:
    # R = 2, ranks 1 and 2 relevant. P@1 = 1, P@2 = 1, P@3 = 2/3.
    # AP@1 = 1/min(1,2) * 1 = 1; AP@2 = 1/2 * (1 + 1) = 1; AP@3 = 1/2 * (1 + 1 + 0) = 1.
    scores = retrieval_scores([["a", "a", "b", "b", "b"]], ["a"], [2], ks=(1, 2, 3))
    assert scores.map_at == {1: 1.0, 2: 1.0, 3: 1.0}
    assert scores.precision_at == pytest.approx({1: 1.0, 2: 1.0, 3: 2 / 3})
    assert scores.top_k_accuracy == {1: 1.0, 2: 1.0, 3: 1.0}
    assert (scores.queries, scores.skipped) == (1, 0)


def test_relevant_at_ranks_two_and_three() -> None:
    # R = 2, relevant at ranks 2 and 3: P@1 = 0, P@2 = 1/2, P@3 = 2/3.
    # AP@1 = 1/1 * 0 = 0; AP@3 = 1/min(3,2) * (1/2 + 2/3) = 1/2 * 7/6 = 7/12.
    scores = retrieval_scores([["b", "a", "a", "b"]], ["a"], [2], ks=(1, 3))
    assert scores.map_at == pytest.approx({1: 0.0, 3: 7 / 12})
    assert scores.precision_at == pytest.approx({1: 0.0, 3: 2 / 3})
    assert scores.top_k_accuracy == {1: 0.0, 3: 1.0}


def test_more_relevant_items_than_k_divides_by_k() -> None:
    # R = 4 > k = 3, relevant at ranks 2 and 3: AP@3 = 1/min(3,4) * (1/2 + 2/3) = 7/18.
    scores = retrieval_scores([["b", "a", "a", "a", "a"]], ["a"], [4], ks=(3,))
    assert scores.map_at[3] == pytest.approx(7 / 18)


def test_tied_items_are_scored_in_the_order_given() -> None:
    # The same two tied gallery items, ordered two ways by the caller; R = 1.
    # Relevant first: AP@2 = 1/1 * P@1 = 1. Relevant second: AP@2 = 1/1 * P@2 = 1/2.
    first = retrieval_scores([["a", "b"]], ["a"], [1], ks=(2,))
    second = retrieval_scores([["b", "a"]], ["a"], [1], ks=(2,))
    assert first.map_at[2] == 1.0
    assert second.map_at[2] == pytest.approx(0.5)


def test_query_of_a_one_member_class_is_skipped_not_zero() -> None:
    # "c" has no other item (R = 0): skipped. Only the "a" query counts: AP@1 = 1, so mAP@1 = 1
    # (it would be (1 + 0) / 2 = 0.5 if the skipped query were scored as 0).
    scores = retrieval_scores([["a", "b"], ["a", "b"]], ["a", "c"], [1, 0], ks=(1,))
    assert scores.map_at == {1: 1.0}
    assert scores.top_k_accuracy == {1: 1.0}
    assert (scores.queries, scores.skipped) == (1, 1)


def test_every_query_skipped_raises() -> None:
    with pytest.raises(ValueError, match="nothing to evaluate"):
        retrieval_scores([["b"], ["a"]], ["a", "b"], [0, 0])


def test_k_larger_than_the_gallery_counts_missing_ranks_as_misses() -> None:
    # 3 gallery items, relevant at ranks 1 and 3 (R = 2). P@10 = 2/10 = 0.2 (not 2/3).
    # AP@10 = 1/min(10,2) * (P@1 + P@3) = 1/2 * (1 + 2/3) = 5/6.
    scores = retrieval_scores([["a", "b", "a"]], ["a"], [2], ks=(10,))
    assert scores.precision_at[10] == pytest.approx(0.2)
    assert scores.map_at[10] == pytest.approx(5 / 6)
    assert scores.top_k_accuracy[10] == 1.0


def test_top_k_accuracy_and_normalised_ks() -> None:
    # First hit at rank 1, rank 3, and rank 6 (beyond k = 5), R = 1 each.
    # top-1 = 1/3, top-3 = 2/3, top-5 = 2/3; mAP@5 = (1/1 + 1/3 + 0) / 3 = 4/9.
    ranked = [
        ["a", "x", "x", "x", "x", "x"],
        ["x", "x", "b", "x", "x", "x"],
        ["x", "x", "x", "x", "x", "c"],
    ]
    scores = retrieval_scores(ranked, ["a", "b", "c"], [1, 1, 1], ks=(5, 1, 3, 1))
    assert scores.ks == (1, 3, 5)
    assert scores.top_k_accuracy == pytest.approx({1: 1 / 3, 3: 2 / 3, 5: 2 / 3})
    assert scores.map_at[5] == pytest.approx(4 / 9)
    assert scores.queries == 3


@pytest.mark.parametrize(
    ("ranked", "labels", "counts", "ks", "message"),
    [
        ([["a"], ["a"]], ["a"], [1], (1,), "one entry per query"),
        ([["a"]], ["a"], [1, 1], (1,), "one entry per query"),
        ([], [], [], (1,), "no queries"),
        ([["a"]], ["a"], [1], (0, 1), "positive"),
        ([["a"]], ["a"], [1], (-5,), "positive"),
        ([["a"]], ["a"], [1], (), "ks is empty"),
        ([["a"]], ["a"], [-1], (1,), "negative"),
        ([["a", "a"]], ["a"], [1], (1,), "relevant_counts says 1"),
    ],
)
def test_bad_retrieval_inputs_raise(
    ranked: list[list[str]], labels: list[str], counts: list[int], ks: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_scores(ranked, labels, counts, ks=ks)


def test_duplicate_precision_recall_f1_at_a_threshold() -> None:
    # At 0.65: TP = 2 (0.9, 0.8), FP = 1 (0.7). Precision = 2/3, recall = 2/4 = 1/2,
    # F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7.
    scores = duplicate_scores(OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT, 0.65)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(1 / 2)
    assert scores.f1 == pytest.approx(4 / 7)
    assert (scores.duplicate_pairs, scores.distinct_pairs) == (4, 2)


def test_score_equal_to_the_threshold_is_a_duplicate() -> None:
    # At 0.8: TP = 2 (0.9 and 0.8 itself), FP = 0: precision 1, recall 2/4.
    scores = duplicate_scores(OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT, 0.8)
    assert scores.precision == 1.0
    assert scores.recall == pytest.approx(0.5)


def test_threshold_no_pair_reaches() -> None:
    # Nothing predicted: precision 1.0 by convention, recall 0/4 = 0, F1 0.
    scores = duplicate_scores(OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT, 0.95)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 0.0, 0.0)


def test_precision_recall_curve_ascending() -> None:
    # (threshold, TP, FP): 0.3 (4, 2), 0.5 (4, 1), 0.6 (3, 1), 0.7 (2, 1), 0.8 (2, 0), 0.9 (1, 0).
    # The best recall with precision >= 0.99 is at 0.8: 2/4.
    scores = duplicate_scores(OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT, 0.65)
    expected = [
        (0.3, 4 / 6, 1.0),
        (0.5, 4 / 5, 1.0),
        (0.6, 3 / 4, 3 / 4),
        (0.7, 2 / 3, 2 / 4),
        (0.8, 1.0, 2 / 4),
        (0.9, 1.0, 1 / 4),
    ]
    assert len(scores.curve) == len(expected)
    for point, wanted in zip(scores.curve, expected, strict=True):
        assert point == pytest.approx(wanted)
    assert scores.recall_at_precision_99 == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("duplicates", "recall"),
    [
        # 99 duplicates at 0.9, one distinct at 0.95. At 0.9: precision 99/100 = 0.99 counts,
        # recall 99/99 = 1. At 0.95: precision 0/1 = 0.
        (99, 1.0),
        # 98 duplicates: at 0.9 precision 98/99 = 0.9899 < 0.99, at 0.95 it is 0: no point.
        (98, 0.0),
    ],
)
def test_recall_at_99_percent_precision_boundary(duplicates: int, recall: float) -> None:
    scores = duplicate_scores([0.9] * duplicates, [0.95], 0.5)
    assert scores.recall_at_precision_99 == recall


def test_margin_positive_when_separated() -> None:
    # Lowest duplicate 0.8 minus highest distinct 0.5 = 0.3.
    scores = duplicate_scores([0.9, 0.8], [0.3, 0.5], 0.65)
    assert scores.margin == pytest.approx(0.3)


def test_margin_negative_when_overlapping() -> None:
    # Lowest duplicate 0.5 minus highest distinct 0.7 = -0.2.
    scores = duplicate_scores(OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT, 0.65)
    assert scores.margin == pytest.approx(-0.2)


def test_calibration_separated_is_the_midpoint() -> None:
    # Every duplicate above every distinct pair: (0.8 + 0.5) / 2 = 0.65.
    scores = duplicate_scores([0.9, 0.8], [0.3, 0.5], 0.5)
    assert scores.calibrated_threshold == pytest.approx(0.65)
    assert scores.calibrated_threshold == calibrate_threshold([0.9, 0.8], [0.3, 0.5])


def test_calibration_overlapping_is_the_fewest_errors_cut() -> None:
    # Cuts between observed scores, (missed duplicates + merged distinct): 0.4 (0 + 1),
    # 0.55 (1 + 1), 0.65 (2 + 1), 0.75 (2 + 0), 0.85 (3 + 0): 0.4 has the fewest errors.
    scores = duplicate_scores(OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT, 0.65)
    assert scores.calibrated_threshold == pytest.approx(0.4)
    assert scores.calibrated_threshold == calibrate_threshold(
        OVERLAPPING_DUPLICATES, OVERLAPPING_DISTINCT
    )


@pytest.mark.parametrize(("duplicate", "distinct"), [([], [0.3]), ([0.9], []), ([], [])])
def test_empty_pair_lists_raise(duplicate: list[float], distinct: list[float]) -> None:
    with pytest.raises(ValueError, match="at least one duplicate and one distinct pair"):
        duplicate_scores(duplicate, distinct, 0.5)
