"""What every backend stores and checks the same way: model records, payloads, refusals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.errors import CollectionMismatch
from schemas.models import ModelManifest
from schemas.points import NewPoint

# Version of the collection record (model id, fingerprint, dimension) a collection keeps.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Recorded:
    """What a collection says about the model that built it."""

    model_id: str
    fingerprint: str
    dimension: int

    @classmethod
    def of(cls, model: ModelManifest) -> Recorded:
        """What the collection of this model records once it is created."""
        return cls(model.spec.id, model.fingerprint, model.spec.dimension)


def check_model(name: str, recorded: Recorded, model: ModelManifest) -> None:
    """Refuse a collection built by another model file or for another dimension."""
    if recorded.fingerprint != model.fingerprint:
        raise CollectionMismatch(
            f"collection {name!r} was built with {recorded.fingerprint}, not "
            f"{model.fingerprint}: a collection belongs to one model file. Register the new "
            f"file under a new id (`lookalike models register FILE --id NEW_ID`) and run "
            f"`lookalike reindex --to NEW_ID`, or use another collection prefix"
        )
    if recorded.dimension != model.spec.dimension:
        raise CollectionMismatch(
            f"collection {name!r} holds {recorded.dimension}-d vectors but model "
            f"{model.spec.id} makes {model.spec.dimension}-d ones: register the model file "
            f"under a new id (`lookalike models register FILE --id NEW_ID`) and run "
            f"`lookalike reindex --to NEW_ID`, or use another collection prefix"
        )


def check_vectors(model: ModelManifest, points: Sequence[NewPoint]) -> None:
    """Refuse points whose vectors do not have the model's dimension."""
    for point in points:
        if len(point.vector) != model.spec.dimension:
            raise CollectionMismatch(
                f"item {point.item_id!r}: vector has {len(point.vector)} dimensions but "
                f"model {model.spec.id} makes {model.spec.dimension}-d vectors; the model "
                "file and its manifest disagree (register the file under a new id with "
                "`lookalike models register FILE --id NEW_ID`, then `lookalike reindex "
                "--to NEW_ID`)"
            )


def stored_payload(model: ModelManifest, point: NewPoint, ingested_at: str) -> dict[str, Any]:
    """A new point's payload: its metadata plus the system keys, which win."""
    system = {
        "item_id": point.item_id,
        "image_sha256": point.image_sha256,
        "source_uri": point.source_uri,
        "thumbnail_key": point.thumbnail_key,
        "ingested_at": ingested_at,
        "model_fingerprint": model.fingerprint,
    }
    return {**point.metadata, **system}
