"""Each model's near-duplicate threshold: default, override, calibration on labelled pairs."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable

from ingest.models.registry import ModelRegistry


def default_threshold(registry: ModelRegistry, model_id: str) -> float:
    """The model's duplicate threshold: calibrated on the user's images, else its spec's."""
    return registry.duplicate_threshold(model_id)


def resolve_threshold(registry: ModelRegistry, model_id: str, threshold: float | None) -> float:
    """An explicit threshold if given, else the model's default."""
    return default_threshold(registry, model_id) if threshold is None else threshold


def calibrate_threshold(
    duplicate_scores: Iterable[float], distinct_scores: Iterable[float]
) -> float:
    """A threshold between known duplicate pairs' scores and distinct pairs' (rule above)."""
    duplicates = sorted(float(score) for score in duplicate_scores)
    distinct = sorted(float(score) for score in distinct_scores)
    if not duplicates or not distinct:
        raise ValueError("calibration needs at least one duplicate and one distinct pair")
    if duplicates[0] > distinct[-1]:
        return (duplicates[0] + distinct[-1]) / 2
    values = sorted(set(duplicates + distinct))
    # Cuts between consecutive observed scores: no score sits exactly on one.
    cuts = [(low + high) / 2 for low, high in itertools.pairwise(values)]
    best_cut, best_errors = values[-1], len(duplicates)
    for cut in cuts:
        missed = bisect.bisect_left(duplicates, cut)
        merged = len(distinct) - bisect.bisect_right(distinct, cut)
        if missed + merged <= best_errors:
            best_cut, best_errors = cut, missed + merged
    return max(-1.0, min(1.0, best_cut))
