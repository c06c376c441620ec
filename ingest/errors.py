"""The small set of exceptions the ingest package raises."""

from __future__ import annotations

from enum import StrEnum


class LookalikeError(Exception):
    """Base class: every error Lookalike raises on purpose."""


class InvalidImageReason(StrEnum):
    """Machine-readable reason an input was refused (kept in dead letters and API errors)."""

    EMPTY = "empty"
    TOO_MANY_BYTES = "too_many_bytes"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    DECOMPRESSION_BOMB = "decompression_bomb"
    BAD_ASPECT_RATIO = "bad_aspect_ratio"
    DECODE_ERROR = "decode_error"
    NOT_FOUND = "not_found"
    FORBIDDEN_PATH = "forbidden_path"
    FORBIDDEN_HOST = "forbidden_host"
    BAD_URI = "bad_uri"


class InvalidImage(LookalikeError):
    """The input cannot become an embedding; retrying will not help."""

    def __init__(self, reason: InvalidImageReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


class SourceUnavailable(LookalikeError):
    """Image bytes could not be fetched right now (timeout, 5xx): worth a retry."""


class ModelError(LookalikeError):
    """A model is unknown, missing, corrupt or not what we expect."""


class ModelNotFound(ModelError):
    """No file for this model id in the models directory."""


class ChecksumMismatch(ModelError):
    """A downloaded or registered file does not have the expected sha256."""


class DownloadFailed(ModelError):
    """A model file could not be downloaded (HTTP error, network failure, size limit)."""


class StoreError(LookalikeError):
    """The vector store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The vector store cannot be reached (transient: worth a retry)."""


class CollectionMismatch(StoreError):
    """A collection holds vectors of another model or dimension than the one offered."""


class CollectionNotFound(StoreError):
    """No collection for this model yet (nothing ingested with it)."""

    def __init__(self, model_id: str, message: str) -> None:
        super().__init__(message)
        self.model_id = model_id


class ItemNotFound(StoreError):
    """No stored point for this item id."""


class BackupError(StoreError):
    """A backup or restore of the embedded store was refused: bad target, incomplete or
    corrupt backup, a root that already holds collections."""


class QueueUnavailable(LookalikeError):
    """The queue's Redis is not configured here, or cannot be reached."""


class ExtraNotInstalled(LookalikeError):
    """A feature needs an optional extra (``pip install 'lookalike[<extra>]'``) not installed."""
