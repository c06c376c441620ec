"""ONNX Runtime sessions on the CPU, and what a model's graph says about its input and output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from ingest.errors import ModelError, ModelNotFound
from schemas.models import OutputKind


@dataclass(frozen=True)
class OnnxSignature:
    """What an ONNX file's graph says about its input and output."""

    input_name: str
    input_size: int | None  # None when height/width are dynamic
    batch_is_dynamic: bool
    output_kind: OutputKind
    dimension: int


def default_session_options(intra_op_threads: int | None) -> ort.SessionOptions:
    """CPU session options: full graph optimisation, threads bounded by the settings."""
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


def open_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
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
    session = open_session(path, default_session_options(1))
    return _signature(session, path)
