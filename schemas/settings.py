"""Runtime settings, read from ``LOOKALIKE_*`` environment variables (nested with ``__``)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PAYLOAD_INDEXES = ("item_id", "image_sha256", "brand", "category", "product_id")


class ImageLimits(BaseModel):
    """Caps that turn hostile images into a clean ``InvalidImage`` instead of a hang or OOM."""

    max_bytes: PositiveInt = Field(default=50 * 1024 * 1024, description="Largest accepted file.")
    max_pixels: PositiveInt = Field(
        default=50_000_000, description="Largest width x height before decoding (bomb guard)."
    )
    max_aspect_ratio: float = Field(
        default=20.0, gt=1.0, description="Longest side / shortest side above this is refused."
    )


def _default_threads() -> int:
    return max(1, (os.cpu_count() or 1))


class Settings(BaseSettings):
    """Everything Lookalike can be configured with; every field has a working default."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("lookalike")),
        description="Where the embedded store and other state live.",
    )
    models_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("lookalike")) / "models",
        description="Where ONNX model files and their manifests live.",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset means local mode on disk."
    )
    qdrant_api_key: str | None = None
    qdrant_path: Path | None = Field(
        default=None,
        description="Local-mode store directory (default: <data_dir>/qdrant); ':memory:' for RAM.",
    )
    collection_prefix: str = "lookalike"
    default_model: str = "dinov2-vits14"
    enabled_models: list[str] = Field(
        default_factory=list,
        description="Models every image is embedded with (default: default_model).",
    )
    payload_indexes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PAYLOAD_INDEXES),
        description="Payload fields that get a keyword index (the ones users filter and group by).",
    )
    worker_processes: PositiveInt = Field(default=1, description="Embedding processes per machine.")
    intra_op_threads: PositiveInt | None = Field(
        default=None, description="ONNX Runtime threads per session (default: cores / processes)."
    )
    batch_size: PositiveInt = Field(default=16, description="Images per embedding batch.")
    tta_flip: bool = Field(
        default=False, description="Average with the horizontally flipped image."
    )
    images: ImageLimits = Field(default_factory=ImageLimits)

    def resolved_qdrant_location(self) -> str:
        """Local-mode location: an explicit path, ':memory:', or the data dir default."""
        if self.qdrant_path is not None:
            return str(self.qdrant_path)
        return str(self.data_dir / "qdrant")

    def resolved_enabled_models(self) -> list[str]:
        """The models every ingested image is embedded with."""
        return self.enabled_models or [self.default_model]

    def resolved_intra_op_threads(self) -> int:
        """Threads per ONNX session so that sessions x processes never exceed the cores."""
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return max(1, _default_threads() // self.worker_processes)
