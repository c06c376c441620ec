"""DINO embeddings with ONNX Runtime on the CPU: one session per model per process, batched."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ingest.errors import ChecksumMismatch, ModelError, ModelNotFound
from ingest.models.onnx_session import _signature, default_session_options, open_session
from ingest.models.registry import ModelRegistry, file_sha256
from schemas.models import ModelManifest, ModelSpec

log = logging.getLogger(__name__)


FloatArray = npt.NDArray[np.float32]


def l2_normalize(vectors: FloatArray) -> FloatArray:
    """Unit-length rows; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class OnnxEmbedder:
    """Batched CLS-token embeddings from an ONNX DINO model (reference preprocessing)."""

    def __init__(
        self,
        model_path: Path,
        spec: ModelSpec,
        *,
        intra_op_threads: int | None = None,
        normalize: bool = True,
        tta_flip: bool = False,
        inference_batch: int = 4,
        session_options: ort.SessionOptions | None = None,
    ) -> None:
        self.spec = spec
        self.inference_batch = inference_batch
        self.normalize = normalize
        self.tta_flip = tta_flip
        options = session_options or default_session_options(intra_op_threads)
        self.session = open_session(model_path, options)
        self.signature = _signature(self.session, model_path)
        if self.signature.dimension != spec.dimension:
            raise ModelError(
                f"{model_path}: graph outputs dimension {self.signature.dimension}, "
                f"but model {spec.id!r} is declared with {spec.dimension}"
            )
        size = spec.preprocessing.input_size
        if self.signature.input_size not in (None, size):
            raise ModelError(
                f"{model_path}: graph expects {self.signature.input_size}px input, "
                f"but model {spec.id!r} preprocesses to {size}px"
            )

    @property
    def dimension(self) -> int:
        """Length of every embedding this model produces."""
        return self.spec.dimension

    def embed(self, batch: FloatArray) -> FloatArray:
        """Embed a (batch, 3, H, W) float32 array into (batch, dim) float32 vectors."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (batch, 3, H, W) array, got shape {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._run(batch)
        if self.tta_flip:
            # Horizontal-flip test-time augmentation: average with the mirrored image.
            vectors = (vectors + self._run(batch[..., ::-1])) / 2.0
        return l2_normalize(vectors) if self.normalize else vectors

    def _run(self, batch: FloatArray) -> FloatArray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        # Measured on 2-4 core CPUs: ViT throughput peaks at 2-4 images per run and drops for
        # larger runs (activations fall out of cache), so big batches go through in slices.
        # A graph exported with a fixed batch of 1 gets slices of one.
        step = self.inference_batch if self.signature.batch_is_dynamic else 1
        outputs = np.concatenate(
            [self._infer(batch[start : start + step]) for start in range(0, len(batch), step)]
        )
        if outputs.ndim == 3:
            outputs = outputs[:, 0, :]  # CLS token comes first in the token sequence
        return outputs.astype(np.float32, copy=False)

    def _infer(self, batch: FloatArray) -> FloatArray:
        (output,) = self.session.run(
            [self.session.get_outputs()[0].name], {self.signature.input_name: batch}
        )
        return np.asarray(output, dtype=np.float32)


def verified_model_path(registry: ModelRegistry, manifest: ModelManifest) -> Path:
    """The model's file after checking it is the one the manifest (and collections) recorded."""
    path = registry.model_path(manifest.spec.id)
    if not path.is_file():
        raise ModelNotFound(f"model file missing: {path}")
    actual = file_sha256(path)
    if actual != manifest.sha256:
        raise ChecksumMismatch(
            f"{path} has sha256 {actual}, its manifest says {manifest.sha256}: the file was "
            "replaced or corrupted; fetch/export it again or register it under a new id"
        )
    return path


@functools.lru_cache(maxsize=8)
def _cached_embedder(
    registry: ModelRegistry,
    manifest: ModelManifest,
    intra_op_threads: int,
    tta_flip: bool,
    inference_batch: int,
) -> OnnxEmbedder:
    path = verified_model_path(registry, manifest)
    log.info("loading ONNX model %s (%s threads)", path, intra_op_threads)
    return OnnxEmbedder(
        path,
        manifest.spec,
        intra_op_threads=intra_op_threads,
        tta_flip=tta_flip,
        inference_batch=inference_batch,
    )


def load_embedder(
    registry: ModelRegistry,
    manifest: ModelManifest,
    *,
    intra_op_threads: int,
    tta_flip: bool = False,
    inference_batch: int = 4,
) -> OnnxEmbedder:
    """The process-wide embedder of a model: checksum-verified and loaded once, then cached."""
    return _cached_embedder(registry, manifest, intra_op_threads, tta_flip, inference_batch)
