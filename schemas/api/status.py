"""Collections, installed models, and the health and readiness checks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from schemas.points import CollectionInfo


class CollectionList(BaseModel):
    """Every Lookalike collection in the store."""

    default_model: str
    collections: list[CollectionInfo]


class ModelInfo(BaseModel):
    """An installed model and its collection, if any."""

    id: str
    dimension: int
    fingerprint: str
    random_weights: bool
    default: bool
    enabled: bool
    duplicate_threshold: float
    collection: CollectionInfo | None = None


class ModelList(BaseModel):
    """Installed models."""

    models: list[ModelInfo]


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Check(BaseModel):
    """One dependency of readiness."""

    ok: bool
    message: str


class Readiness(BaseModel):
    """Whether this process can serve queries and uploads, and which part fails if not."""

    ready: bool
    auth: Literal["api_keys", "open"] = Field(
        description="`open`: no API keys configured, anyone may call every endpoint."
    )
    checks: dict[str, Check]
