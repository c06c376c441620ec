"""ONNX Runtime embedder: fidelity to PyTorch, batching, TTA, and clear errors for bad models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ingest.errors import ChecksumMismatch, ModelError, ModelNotFound
from ingest.models.embedder import OnnxEmbedder, load_embedder
from ingest.models.onnx_session import inspect_onnx
from ingest.models.registry import ModelRegistry
from schemas.models import ModelFamily, ModelManifest, ModelSpec, OutputKind
from tests.support import TEST_MODEL_DIR

REFERENCE = np.load(TEST_MODEL_DIR / "reference.npz")


@pytest.fixture
def raw_embedder(test_manifest: ModelManifest, registry: ModelRegistry) -> OnnxEmbedder:
    """Embedder without normalisation, to compare with the raw PyTorch outputs."""
    return OnnxEmbedder(
        registry.model_path(test_manifest.spec.id),
        test_manifest.spec,
        intra_op_threads=1,
        normalize=False,
    )


def test_onnx_runtime_reproduces_pytorch_reference(raw_embedder: OnnxEmbedder) -> None:
    actual = raw_embedder.embed(REFERENCE["inputs"])
    max_abs_diff = float(np.max(np.abs(actual - REFERENCE["outputs"])))
    print(f"ONNX Runtime vs PyTorch reference: max abs diff {max_abs_diff:.2e}")
    assert actual.shape == REFERENCE["outputs"].shape
    assert max_abs_diff < 1e-4


def test_batch_equals_one_by_one(test_manifest: ModelManifest, registry: ModelRegistry) -> None:
    embedder = load_embedder(registry, test_manifest, intra_op_threads=1)
    batch = np.random.default_rng(3).standard_normal((5, 3, 224, 224), dtype=np.float32)
    together = embedder.embed(batch)
    alone = np.concatenate([embedder.embed(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_embedder_is_loaded_once_per_process(
    test_manifest: ModelManifest, registry: ModelRegistry
) -> None:
    first = load_embedder(registry, test_manifest, intra_op_threads=1)
    assert load_embedder(ModelRegistry(registry.models_dir), test_manifest, intra_op_threads=1) is (
        first
    )


def test_empty_batch_gives_empty_result(raw_embedder: OnnxEmbedder) -> None:
    assert raw_embedder.embed(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 96)


def test_tta_flip_averages_with_mirrored_image(
    test_manifest: ModelManifest, registry: ModelRegistry
) -> None:
    path = registry.model_path(test_manifest.spec.id)
    plain = OnnxEmbedder(path, test_manifest.spec, intra_op_threads=1, normalize=False)
    tta = OnnxEmbedder(path, test_manifest.spec, intra_op_threads=1, tta_flip=True)
    batch = REFERENCE["inputs"][:2]
    expected = plain.embed(batch) + plain.embed(np.ascontiguousarray(batch[..., ::-1]))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(tta.embed(batch), expected, atol=1e-5)
    assert not np.allclose(tta.embed(batch), plain.embed(batch), atol=1e-3)


def test_missing_model_file_is_model_not_found(
    tmp_path: Path, test_manifest: ModelManifest
) -> None:
    with pytest.raises(ModelNotFound, match="not found"):
        OnnxEmbedder(tmp_path / "absent.onnx", test_manifest.spec)


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path, test_manifest: ModelManifest) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not a protobuf model" * 10)
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        OnnxEmbedder(corrupt, test_manifest.spec)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _token_model(path: Path, dimension: int = 8) -> Path:
    """A patch-embedding graph with output (batch, tokens, dim), like a DINO token sequence."""
    weight = np.random.default_rng(0).standard_normal((dimension, 3, 14, 14)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv", ["pixel_values", "w"], ["conv"], kernel_shape=[14, 14], strides=[14, 14]
        ),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", 256, dimension])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.flatten().tolist()),
            helper.make_tensor("shape", TensorProto.INT64, [3], [0, dimension, -1]),
        ],
    )
    return _save(graph, path)


def test_token_sequence_output_takes_the_first_token(tmp_path: Path) -> None:
    path = _token_model(tmp_path / "tokens.onnx")
    signature = inspect_onnx(path)
    assert signature.output_kind is OutputKind.TOKENS
    assert signature.dimension == 8
    assert signature.input_size == 224
    spec = ModelSpec(id="tokens", family=ModelFamily.CUSTOM, dimension=8, output=OutputKind.TOKENS)
    embedder = OnnxEmbedder(path, spec, normalize=False)
    batch = REFERENCE["inputs"][:2]
    full = embedder.session.run(None, {"pixel_values": batch})[0]
    np.testing.assert_allclose(embedder.embed(batch), full[:, 0, :], atol=1e-6)


def test_unexpected_inputs_are_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["out"])],
        "two-inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 8]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 8])],
    )
    path = _save(graph, tmp_path / "two-inputs.onnx")
    with pytest.raises(ModelError, match=r"expected one image input shaped \(batch, 3"):
        inspect_onnx(path)


def test_declared_dimension_must_match_the_graph(
    test_manifest: ModelManifest, registry: ModelRegistry
) -> None:
    wrong = test_manifest.spec.model_copy(update={"dimension": 384})
    with pytest.raises(ModelError, match="dimension 96"):
        OnnxEmbedder(registry.model_path(test_manifest.spec.id), wrong)


def test_replaced_model_file_fails_checksum(
    test_manifest: ModelManifest, registry: ModelRegistry, tmp_path: Path
) -> None:
    path = registry.model_path(test_manifest.spec.id)
    _token_model(tmp_path / "other.onnx", dimension=96)
    path.write_bytes((tmp_path / "other.onnx").read_bytes())
    with pytest.raises(ChecksumMismatch, match="manifest says"):
        load_embedder(registry, test_manifest, intra_op_threads=2)
