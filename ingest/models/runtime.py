"""An installed model loaded for inference: its manifest and its process-wide embedder."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.models.embedder import OnnxEmbedder, load_embedder
from ingest.models.registry import ModelRegistry
from schemas.models import ModelManifest, Preprocessing
from schemas.settings import Settings


@dataclass(frozen=True)
class ModelRuntime:
    """A model's manifest with its loaded embedder: what a pipeline needs per model."""

    manifest: ModelManifest
    embedder: OnnxEmbedder

    @property
    def preprocessing(self) -> Preprocessing:
        """How this model wants its input prepared."""
        return self.manifest.spec.preprocessing


def load_runtime(settings: Settings, model_id: str) -> ModelRuntime:
    """An installed model with its process-wide embedder, or ``ModelNotFound`` with a hint."""
    registry = ModelRegistry(settings.models_dir)
    manifest = registry.manifest(model_id)
    embedder = load_embedder(
        registry,
        manifest,
        intra_op_threads=settings.resolved_intra_op_threads(),
        tta_flip=settings.tta_flip,
        inference_batch=settings.inference_batch,
    )
    return ModelRuntime(manifest=manifest, embedder=embedder)
