"""Centring and PCA-whitening of CLS embeddings, shipped as a linear layer inside the model.

DINOv2's CLS vectors bunch together: unrelated photos score a cosine of about 0.6 against
about 0.9 for true copies, so no threshold separates copies from look-alikes with high
precision. DINO-style copy-detection pipelines answer this by centring the vectors and
whitening them with a PCA learned on images disjoint from the ones searched. Here the learned
mean and matrix become a few ONNX nodes appended to the model's output:

    tokens (batch, tokens, dim) -> CLS (batch, dim) -> unit length -> minus mean -> @ matrix

(a model that outputs its embedding (batch, dim) directly skips the first step).
The result is a new model file with its own fingerprint and collection, so whitened and plain
vectors never mix; the embedder L2-normalises the output as it does any model's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnx.helper
import onnx.numpy_helper

from ingest.errors import ModelError

FloatArray = npt.NDArray[np.float32]

# Folder of the whitening layers Lookalike ships (learned by `python -m bench.whitening_set`).
HEADS_DIR = Path(__file__).resolve().parent / "heads"
OUTPUT_NAME = "whitened_embedding"
# Eigenvalues below this share of the largest are noise: they are floored there, so that a
# direction the training images never varied in is not blown up.
EIGENVALUE_FLOOR = 1e-6


@dataclass(frozen=True)
class WhiteningLayer:
    """A learned centring vector and whitening matrix (dim x output dim)."""

    mean: FloatArray
    matrix: FloatArray

    @property
    def dimension(self) -> int:
        """Length of the whitened vectors."""
        return int(self.matrix.shape[1])

    def apply(self, vectors: npt.NDArray[np.floating]) -> FloatArray:
        """What the appended graph computes, in numpy: normalise, centre, project."""
        rows = np.asarray(vectors, dtype=np.float64)
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        whitened: FloatArray = ((rows - self.mean) @ self.matrix).astype(np.float32)
        return whitened

    def save(self, path: Path) -> str:
        """Write the layer as an .npz file; returns its sha256."""
        with path.open("wb") as out:
            np.savez(out, mean=self.mean, matrix=self.matrix)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: Path) -> WhiteningLayer:
        """Read a layer written by ``save``."""
        try:
            with np.load(path) as data:
                mean, matrix = data["mean"], data["matrix"]
        except (OSError, KeyError, ValueError) as error:
            raise ModelError(f"{path} is not a whitening layer: {error}") from error
        if mean.ndim != 1 or matrix.ndim != 2 or matrix.shape[0] != mean.shape[0]:
            raise ModelError(
                f"{path}: mean {mean.shape} and matrix {matrix.shape} do not fit together"
            )
        return cls(mean.astype(np.float32), matrix.astype(np.float32))


def learn_whitening(vectors: npt.NDArray[np.floating], dimension: int) -> WhiteningLayer:
    """PCA-whitening of L2-normalised vectors, keeping the ``dimension`` strongest directions."""
    rows = np.asarray(vectors, dtype=np.float64)
    if rows.ndim != 2 or len(rows) <= dimension:
        raise ValueError(
            f"learning a {dimension}-d whitening needs more than {dimension} vectors, "
            f"got {len(rows)}"
        )
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    mean = rows.mean(axis=0)
    centred = rows - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(rows))
    strongest = np.argsort(eigenvalues)[::-1][:dimension]
    kept = np.maximum(eigenvalues[strongest], eigenvalues.max() * EIGENVALUE_FLOOR)
    matrix = eigenvectors[:, strongest] / np.sqrt(kept)
    return WhiteningLayer(mean.astype(np.float32), matrix.astype(np.float32))


def append_whitening(source: Path, target: Path, layer: WhiteningLayer) -> None:
    """Write ``source``'s graph with the whitening of its embedding (or CLS token) appended."""
    model = onnx.load(str(source))
    graph = model.graph
    if len(graph.output) != 1:
        raise ModelError(f"{source.name}: expected one output to whiten, got {len(graph.output)}")
    output = graph.output[0]
    dims = output.type.tensor_type.shape.dim
    size = layer.mean.shape[0]
    # A dimension the exporter left symbolic (dim_value 0) cannot be checked here.
    if len(dims) not in (2, 3) or dims[-1].dim_value not in (0, size):
        raise ModelError(
            f"{source.name}: output {output.name} is not (batch, {size}) or (batch, tokens, "
            f"{size}), so this whitening layer does not fit it"
        )
    make, tensor = onnx.helper.make_node, onnx.numpy_helper.from_array
    embedding = output.name
    if len(dims) == 3:  # tokens: the CLS token comes first
        graph.initializer.append(tensor(np.asarray(0, dtype=np.int64), "whitening_cls_index"))
        graph.node.append(
            make("Gather", [embedding, "whitening_cls_index"], ["whitening_cls"], axis=1)
        )
        embedding = "whitening_cls"
    graph.initializer.extend(
        [tensor(layer.mean, "whitening_mean"), tensor(layer.matrix, "whitening_matrix")]
    )
    graph.node.extend(
        [
            # LpNormalization is the same in every opset (ReduceL2 moved its axes in 18).
            make("LpNormalization", [embedding], ["whitening_unit"], axis=1, p=2),
            make("Sub", ["whitening_unit", "whitening_mean"], ["whitening_centred"]),
            make("MatMul", ["whitening_centred", "whitening_matrix"], [OUTPUT_NAME]),
        ]
    )
    whitened = onnx.helper.make_tensor_value_info(
        OUTPUT_NAME, onnx.TensorProto.FLOAT, [None, layer.dimension]
    )
    whitened.type.tensor_type.shape.dim[0].CopyFrom(dims[0])  # the same batch axis
    del graph.output[:]
    graph.output.append(whitened)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
