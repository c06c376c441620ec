"""The exporter (needs the `export` extra): PyTorch -> ONNX fidelity for every DINO family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from ingest.errors import ModelError
from ingest.models.export import build_backbone, export_onnx
from ingest.models.registry import KNOWN_MODELS, ModelRegistry
from search_api.cli import cli
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID

pytestmark = pytest.mark.torch

REFERENCE = np.load(TEST_MODEL_DIR / "reference.npz")


def _run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"pixel_values": batch})[0])


def test_reexport_reproduces_committed_reference(tmp_path: Path) -> None:
    spec = KNOWN_MODELS["dinov2-vits14"].model_copy(update={"id": TEST_MODEL_ID})
    result = export_onnx(spec, tmp_path / "model.onnx", random_init=True, tiny=True)
    recorded_now = np.load(result.reference_path)
    # Same seed, same architecture: PyTorch gives today what it gave when the fixture was made.
    np.testing.assert_allclose(recorded_now["outputs"], REFERENCE["outputs"], atol=1e-5)
    diff = float(np.max(np.abs(_run(result.onnx_path, REFERENCE["inputs"]) - REFERENCE["outputs"])))
    print(f"re-exported ONNX vs committed PyTorch reference: max abs diff {diff:.2e}")
    assert diff < 1e-4
    assert result.max_abs_diff < 1e-4
    assert result.spec.dimension == 96


@pytest.mark.parametrize("model_id", ["dinov2-vits14-reg4", "dinov3-vits16"])
def test_every_family_exports_faithfully_with_dynamic_batch(tmp_path: Path, model_id: str) -> None:
    result = export_onnx(
        KNOWN_MODELS[model_id], tmp_path / "model.onnx", random_init=True, tiny=True
    )
    print(f"{model_id}: ONNX Runtime vs PyTorch max abs diff {result.max_abs_diff:.2e}")
    assert result.max_abs_diff < 1e-4
    batch = np.random.default_rng(1).standard_normal((5, 3, 224, 224), dtype=np.float32)
    together = _run(result.onnx_path, batch)
    alone = np.concatenate([_run(result.onnx_path, batch[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    assert together.shape == (5, 96)


def test_pretrained_export_without_hub_access_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot load facebook/dinov2-small from the model hub"):
        build_backbone(KNOWN_MODELS["dinov2-vits14"], random_init=False)


def test_cli_export_installs_a_labelled_random_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["models", "export", "dinov3-vits16", "--random-init", "--tiny"],
        env={"LOOKALIKE_MODELS_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output
    manifest = ModelRegistry(tmp_path).manifest("dinov3-vits16-tiny-random")
    assert manifest.random_weights is True
    assert "random weights: for tests and benchmarks only" in manifest.spec.description
    assert manifest.spec.patch_size == 16
    assert manifest.spec.onnx_url is None
