"""Refusing an upload to a model that is not enabled, in one wording wherever it is asked.

``POST /api/v1/uploads`` (a 422 ``model_not_enabled``) and ``lookalike ingest --queue --model``
refuse before anything is stored or queued: a worker would embed into a collection that
nothing else feeds (or fail the event as ``model_unavailable`` for a model it cannot load),
and the producer would only learn it from a dead letter.
"""

from __future__ import annotations

from collections.abc import Sequence

from ingest.errors import LookalikeError, ModelNotFound
from ingest.models.registry import ModelRegistry


class ModelNotEnabled(LookalikeError):
    """Upload events named models that are not enabled; ``enabled`` lists the ones that are."""

    def __init__(self, refused: list[str], enabled: list[str], message: str) -> None:
        super().__init__(message)
        self.refused = refused
        self.enabled = enabled


def check_models_enabled(
    requested: Sequence[str] | None,
    enabled: Sequence[str],
    registry: ModelRegistry,
    *,
    caveat: str = "",
) -> None:
    """Raise ``ModelNotEnabled`` (one line, listing the enabled models) unless every requested
    model is enabled; no request means the enabled ones. ``caveat`` ends the line."""
    if not requested:
        return
    refused = [model_id for model_id in dict.fromkeys(requested) if model_id not in enabled]
    if not refused:
        return
    named = ", ".join(
        f"{model_id!r}" + ("" if _known(registry, model_id) else " (no such model)")
        for model_id in refused
    )
    raise ModelNotEnabled(
        refused,
        list(enabled),
        f"model {named} {'is' if len(refused) == 1 else 'are'} not enabled; enabled: "
        f"{', '.join(enabled)} (LOOKALIKE_ENABLED_MODELS, else the current model){caveat}",
    )


def _known(registry: ModelRegistry, model_id: str) -> bool:
    try:
        registry.spec(model_id)
    except (ModelNotFound, ValueError, OSError):  # OSError, ValueError: not even a file name
        return False
    return True
