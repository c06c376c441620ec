"""DINO embeddings with ONNX Runtime on the CPU: one session per model per process, batched."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ingest.errors import ChecksumMismatch, ModelError, ModelNotFound
from ingest.registry import ModelRegistry, file_sha256
from schemas.models import ModelManifest, ModelSpec, OutputKind

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class OnnxSignature:
    """What an ONNX file's graph says about its input and output."""

    input_name: str
    input_size: int | None  # None when height/width are dynamic
    batch_is_dynamic: bool
    output_kind: OutputKind
    dimension: int


def default_session_options(intra_op_threads: int | None) -> ort.SessionOptions:
    """CPU session options from DESIGN.md: full graph optimisation, bounded threads."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    # One inference at a time per session: inter-op parallelism only adds contention.
    options.inter_op_num_threads = 1
    # Idle intra-op threads sleep instead of spinning. Serving processes share their cores
    # (Celery's consumer, the decoding thread, thumbnails; gunicorn's threads), and spinning
    # threads starved them: the queue path went from 0.76-0.83x to 0.88-0.97x of in-process
    # ingestion. The price, on an otherwise idle machine: embedding alone is 5-10% slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _open_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelNotFound(f"ONNX model file not found: {path}")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped pybind errors for bad files
        raise ModelError(f"cannot load ONNX model {path}: {error}") from error


def _signature(session: ort.InferenceSession, path: Path) -> OnnxSignature:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
        shapes = [(i.name, i.shape) for i in inputs]
        raise ModelError(
            f"{path}: expected one image input shaped (batch, 3, height, width), got {shapes}"
        )
    batch, _, height, width = inputs[0].shape
    output = session.get_outputs()[0]
    if len(output.shape) not in (2, 3) or not isinstance(output.shape[-1], int):
        raise ModelError(
            f"{path}: expected output (batch, dim) or (batch, tokens, dim) with a fixed dim, "
            f"got {output.name} {output.shape}"
        )
    static_size = height if isinstance(height, int) and height == width else None
    return OnnxSignature(
        input_name=inputs[0].name,
        input_size=static_size,
        batch_is_dynamic=not isinstance(batch, int),
        output_kind=OutputKind.EMBEDDING if len(output.shape) == 2 else OutputKind.TOKENS,
        dimension=output.shape[-1],
    )


def inspect_onnx(path: Path) -> OnnxSignature:
    """Read input/output shapes of an ONNX file (used by ``models register``)."""
    session = _open_session(path, default_session_options(1))
    return _signature(session, path)


def l2_normalize(vectors: FloatArray) -> FloatArray:
    """Unit-length rows; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class OnnxEmbedder:
    """Batched CLS-token embeddings from an ONNX DINO model (seed 001, with batching)."""

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
        self.session = _open_session(model_path, options)
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
            # Seed 004's test-time augmentation: average with the mirrored image.
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
