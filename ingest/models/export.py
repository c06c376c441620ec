"""Build DINO models with PyTorch/transformers and export them to ONNX (the `export` extra).

The serving path never imports this module's heavy dependencies: torch and transformers are
imported inside the functions, and a clear error says how to install them.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.errors import ModelError
from schemas.models import ModelFamily, ModelSpec, OutputKind

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = "random weights: for tests and benchmarks only"
REFERENCE_FILENAME = "reference.npz"

# Transformer depth and heads by width, as in the published DINOv2/DINOv3 ViT-S/B/L.
_ARCHITECTURES = {384: (12, 6), 768: (12, 12), 1024: (24, 16)}
# A tiny model of the real architecture: fast enough for every test, small enough to commit.
TINY_DIMENSION, TINY_LAYERS, TINY_HEADS = 96, 4, 3


@dataclass(frozen=True)
class ExportResult:
    """An exported ONNX file, its spec, and the PyTorch outputs recorded at export time."""

    onnx_path: Path
    spec: ModelSpec
    reference_path: Path
    max_abs_diff: float  # ONNX Runtime vs PyTorch on the reference inputs


def _require_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as error:
        raise ModelError(
            "exporting needs PyTorch and transformers: pip install 'lookalike[export]'"
        ) from error
    return torch, transformers


def _random_config(transformers: Any, spec: ModelSpec, dimension: int, tiny: bool) -> Any:
    layers, heads = (TINY_LAYERS, TINY_HEADS) if tiny else _ARCHITECTURES[dimension]
    common = {
        "hidden_size": dimension,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "patch_size": spec.patch_size,
    }
    if spec.family == ModelFamily.DINOV2:
        # image_size 518 as published: 224px inputs exercise position-embedding interpolation.
        return transformers.Dinov2Config(image_size=518, **common)
    if spec.family == ModelFamily.DINOV2_REG:
        return transformers.Dinov2WithRegistersConfig(
            image_size=518, num_register_tokens=4, **common
        )
    if spec.family == ModelFamily.DINOV3:
        return transformers.DINOv3ViTConfig(
            image_size=224, intermediate_size=4 * dimension, num_register_tokens=4, **common
        )
    raise ModelError(f"cannot export family {spec.family!r}: register your own ONNX file instead")


def build_backbone(spec: ModelSpec, *, random_init: bool, tiny: bool = False, seed: int = 0) -> Any:
    """The transformers model for a spec: pretrained from the hub, or random weights."""
    torch, transformers = _require_torch()
    if not random_init:
        if spec.hf_repo is None:
            raise ModelError(f"model {spec.id!r} has no hub repository to export from")
        try:
            return transformers.AutoModel.from_pretrained(spec.hf_repo).eval()
        except OSError as error:  # no network, gated repository, or not logged in
            raise ModelError(
                f"cannot load {spec.hf_repo} from the model hub ({error}); on a machine "
                "without hub access use `lookalike models register` with an ONNX file"
            ) from error
    dimension = TINY_DIMENSION if tiny else spec.dimension
    if not tiny and dimension not in _ARCHITECTURES:
        raise ModelError(f"no known architecture of width {dimension} for {spec.id!r}")
    torch.manual_seed(seed)
    config = _random_config(transformers, spec, dimension, tiny)
    return transformers.AutoModel.from_config(config).eval()


def _cls_wrapper(torch: Any, backbone: Any) -> Any:
    class ClsEmbedding(torch.nn.Module):  # type: ignore[misc]
        """CLS token of the last hidden state, which transformers takes after the final norm."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, pixel_values: Any) -> Any:
            return self.backbone(pixel_values=pixel_values).last_hidden_state[:, 0]

    return ClsEmbedding().eval()


def _freeze_position_embeddings(torch: Any, backbone: Any, size: int) -> None:
    """Precompute the position embeddings for the fixed input size.

    DINOv2 interpolates its 37x37 position grid to the input's patch grid on every call, with
    an antialiased bicubic resize that ONNX cannot express. The exported graph has a fixed
    input size anyway, so the interpolated table is computed once here, by the same code.
    """
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is None or not hasattr(embeddings, "interpolate_pos_encoding"):
        return  # DINOv3 uses rotary embeddings: nothing to freeze
    patches = (size // backbone.config.patch_size) ** 2
    probe = torch.zeros(1, patches + 1, backbone.config.hidden_size)
    with torch.no_grad():
        frozen = embeddings.interpolate_pos_encoding(probe, size, size).detach().clone()
    embeddings.interpolate_pos_encoding = lambda _embeddings, _height, _width: frozen


def reference_inputs(size: int) -> npt.NDArray[np.float32]:
    """Fixed inputs whose PyTorch outputs are recorded next to the exported file."""
    rng = np.random.default_rng(20240601)
    noise = rng.standard_normal((2, 3, size, size), dtype=np.float32)
    ramp = np.linspace(-2.0, 2.0, size, dtype=np.float32)
    gradient = np.broadcast_to(ramp[None, None, :], (1, 3, size, size)).copy()
    return np.concatenate([noise, gradient]).astype(np.float32)


def export_onnx(
    spec: ModelSpec,
    destination: Path,
    *,
    random_init: bool,
    tiny: bool = False,
    seed: int = 0,
) -> ExportResult:
    """Export a DINO model to ONNX with a dynamic batch axis; output = (batch, dim) CLS token."""
    import onnxruntime as ort

    torch, _ = _require_torch()
    if random_init:
        log.warning("exporting %s with %s", spec.id, RANDOM_WEIGHTS_WARNING)
    backbone = build_backbone(spec, random_init=random_init, tiny=tiny, seed=seed)
    wrapper = _cls_wrapper(torch, backbone)
    size = spec.preprocessing.input_size
    inputs = reference_inputs(size)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(inputs)).numpy()
        _freeze_position_embeddings(torch, backbone, size)
        # Export to a temporary name first: a failed export must not leave a half-written model.
        with (
            tempfile.TemporaryDirectory(dir=destination.parent) as scratch,
            warnings.catch_warnings(),
        ):
            # Tracing warns about Python-level shape checks; shapes are fixed except the batch.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            scratch_path = Path(scratch) / "model.onnx"
            torch.onnx.export(
                wrapper,
                (torch.from_numpy(inputs[:1]),),
                str(scratch_path),
                input_names=["pixel_values"],
                output_names=["embedding"],
                dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=18,
                dynamo=False,
                external_data=False,
            )
            scratch_path.replace(destination)
    session = ort.InferenceSession(str(destination), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"pixel_values": inputs})[0]
    max_abs_diff = float(np.max(np.abs(actual - expected)))
    reference_path = destination.with_name(REFERENCE_FILENAME)
    np.savez_compressed(reference_path, inputs=inputs, outputs=expected)
    update: dict[str, Any] = {"dimension": expected.shape[1], "output": OutputKind.EMBEDDING}
    if random_init:
        # Not the published model: drop the download address and checksum of the real one.
        about = (
            f"Tiny {spec.family.value} ({TINY_LAYERS} layers, {TINY_DIMENSION}-d) of the real "
            "architecture"
            if tiny
            else spec.description
        )
        description = f"{about} [{RANDOM_WEIGHTS_WARNING}]"
        update |= {"onnx_url": None, "onnx_sha256": None, "description": description}
    exported_spec = spec.model_copy(update=update)
    return ExportResult(destination, exported_spec, reference_path, max_abs_diff)
