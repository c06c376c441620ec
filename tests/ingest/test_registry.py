"""Model registry: known models, installed manifests, registering user ONNX files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import ModelError, ModelNotFound
from ingest.models.registry import KNOWN_MODELS, ModelRegistry, file_sha256
from schemas.models import ModelFamily, OutputKind
from tests.support import TEST_MODEL_ID


def test_known_models_cover_the_dino_family() -> None:
    dims = {model_id: spec.dimension for model_id, spec in KNOWN_MODELS.items()}
    assert dims == {
        "dinov2-vits14": 384,
        "dinov2-vits14-imgfocus": 384,
        "dinov2-vits14-imgfocus-whitened": 384,
        "dinov2-vitb14": 768,
        "dinov2-vitl14": 1024,
        "dinov2-vits14-reg4": 384,
        "dinov2-vitb14-reg4": 768,
        "dinov2-vitl14-reg4": 1024,
        "dinov3-vits16": 384,
        "dinov3-vitb16": 768,
        "dinov3-vitl16": 1024,
    }
    assert {spec.patch_size for spec in KNOWN_MODELS.values() if spec.family == "dinov3"} == {16}


def test_installed_test_model_has_fingerprint(registry: ModelRegistry) -> None:
    manifest = registry.manifest(TEST_MODEL_ID)
    assert manifest.random_weights is True
    assert manifest.sha256 == file_sha256(registry.model_path(TEST_MODEL_ID))
    assert manifest.fingerprint == f"{TEST_MODEL_ID}@sha256:{manifest.sha256}"
    assert [m.spec.id for m in registry.installed()] == [TEST_MODEL_ID]


def test_known_but_missing_model_says_how_to_get_it(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFound, match="lookalike models fetch dinov2-vitb14"):
        registry.manifest("dinov2-vitb14")


def test_unknown_model_lists_known_ones(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFound, match="known models: dinov2-vitb14"):
        registry.manifest("no-such-model")


def test_register_reads_dimension_from_graph(registry: ModelRegistry, tmp_path: Path) -> None:
    source = registry.model_path(TEST_MODEL_ID)
    manifest = registry.register(source, "my-finetuned", family=ModelFamily.DINOV2)
    assert manifest.spec.dimension == 96
    assert manifest.spec.output is OutputKind.EMBEDDING
    assert manifest.spec.preprocessing.input_size == 224
    assert registry.manifest("my-finetuned").sha256 == file_sha256(source)
    assert registry.spec("my-finetuned").family is ModelFamily.DINOV2


def test_register_refuses_known_ids_and_missing_files(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="known model id"):
        registry.register(registry.model_path(TEST_MODEL_ID), "dinov2-vits14")
    with pytest.raises(ModelNotFound, match="no such ONNX file"):
        registry.register(tmp_path / "absent.onnx", "absent")
