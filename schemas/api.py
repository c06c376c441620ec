"""Request and response bodies of the HTTP API (`/api/v1`), from which OpenAPI is built."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    Json,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from schemas.duplicates import DuplicateJob
from schemas.events import EventStatus
from schemas.points import CollectionInfo, PayloadFilter, ScoredPoint
from schemas.queries import (
    MAX_CURSOR_CHARS,
    MAX_GROUP_SIZE,
    MAX_GROUPS_PER_PAGE,
    ClusterQuery,
    FacetQuery,
    GroupQuery,
    RecommendQuery,
)

MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
MAX_VECTOR_DIMENSION = 4096
# Qdrant walks `offset` points before the first result: deep pages cost as much as big ones.
MAX_OFFSET = 100_000

ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN, max_length=100)]
ItemId = Annotated[str, Field(min_length=1, max_length=500, examples=["sku-01"])]
Limit = Annotated[int, Field(ge=1, le=1000, description="Results per page (capped by settings).")]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="Results to skip.")]
ScoreThreshold = Annotated[
    float, Field(ge=-1.0, le=1.0, description="Only results at least this similar (cosine).")
]


def _usable_vector(vector: list[float]) -> list[float]:
    # A zero or overflowing vector has no direction: cosine scores would come back as NaN.
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if not (norm > 0 and math.isfinite(norm)):
        raise ValueError("the vector must be non-zero with a finite length")
    return vector


Vector = Annotated[
    list[FiniteFloat],
    Field(min_length=1, max_length=MAX_VECTOR_DIMENSION),
    AfterValidator(_usable_vector),
]


MAX_METADATA_DEPTH = 16
_INT64 = 2**63


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates, from "\ud800" escapes in JSON
        raise ValueError("text must be valid Unicode (no lone surrogates)") from error


def _payload_safe(metadata: dict[str, Any]) -> dict[str, Any]:
    # What is stored must come back out as JSON, from Qdrant servers too: finite numbers,
    # 64-bit integers, valid text, bounded nesting. Iterative: no recursion on deep input.
    pending: list[tuple[Any, int]] = [(metadata, 0)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -_INT64 <= value < _INT64:
                raise ValueError("integers must fit in 64 bits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("numbers must be finite")
        else:
            raise ValueError(f"not a JSON value: {type(value).__name__}")
    return metadata


Metadata = Annotated[dict[str, Any], AfterValidator(_payload_safe)]


def _uploaded_file(value: Any) -> Any:
    # Duck-typed so that schemas/ does not import Werkzeug: a FileStorage has both.
    if not (hasattr(value, "read") and hasattr(value, "filename")):
        raise ValueError("expected a file part (multipart/form-data with a filename)")
    return value


UploadedFile = Annotated[
    Any,
    PlainValidator(_uploaded_file),
    WithJsonSchema({"type": "string", "format": "binary"}),
]
EXAMPLE_FILTER = '{"must": [{"kind": "match", "key": "brand", "value": "acme"}]}'


def _form_schema(schema: dict[str, Any]) -> None:
    # A multipart field cannot be null, only absent: document optional fields by type alone.
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if not options or {"type": "null"} not in options:
            continue
        rest = [option for option in options if option != {"type": "null"}]
        del prop["anyOf"]
        if len(rest) == 1:
            prop.update(rest[0])
        else:
            prop["anyOf"] = rest
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class _Form(BaseModel):
    """A multipart/form-data body: an empty field counts as absent."""

    model_config = ConfigDict(json_schema_extra=_form_schema)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value != ""}
        return data


def _one_or_many(value: Any) -> Any:
    # A repeated form field arrives as a list, a single one alone; a file object is iterable
    # (by lines), so it must not be taken for a list.
    return value if isinstance(value, list) else [value]


_T = TypeVar("_T")
# A form field that may be repeated: one value or several, always a list.
Repeated = Annotated[list[_T], BeforeValidator(_one_or_many)]


# --- errors -------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code, a message for people, and details."""

    code: str = Field(description="e.g. validation_error, item_not_found, invalid_image.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The one error body of every non-2xx response."""

    error: ErrorDetail


# --- similarity ---------------------------------------------------------------------------


class _QueryOptions(BaseModel):
    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    filter: PayloadFilter | None = None
    limit: Limit = 10
    offset: Offset = 0
    score_threshold: ScoreThreshold | None = None


class SimilarByItem(_QueryOptions):
    """Images like a stored item's image (no re-embedding); the item itself is left out."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"item_id": "sku-01", "limit": 5}]})

    item_id: ItemId


class SimilarByVector(_QueryOptions):
    """Images like a raw embedding of the model's dimension."""

    vector: Vector


class SimilarByImageForm(_Form):
    """Images like an uploaded image (multipart/form-data); ``filter`` is a JSON string."""

    image: UploadedFile
    model_id: ModelId | None = None
    filter: Json[PayloadFilter] | None = Field(default=None, examples=[EXAMPLE_FILTER])
    limit: Limit = 10
    offset: Offset = 0
    score_threshold: ScoreThreshold | None = None


class SearchResults(BaseModel):
    """Ranked results, best first."""

    model_id: str
    hits: list[ScoredPoint]


# The query service's own models with an optional model id (default model) for the API.
# (mypy sees a narrower base field; pydantic allows the override and the service gets a copy
# with the id filled in.)


class GroupRequest(GroupQuery):
    """Best matches grouped by a payload field, a page of groups at a time (``next_cursor``)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"item_id": "sku-01", "group_by": "brand", "limit": 2}]}
    )

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]
    vector: Vector | None = None


class GroupByImageForm(_Form):
    """Grouped query with an uploaded image (multipart/form-data); ``filter`` is a JSON string."""

    image: UploadedFile
    model_id: ModelId | None = None
    group_by: str = Field(min_length=1, description="Indexed payload field, e.g. product_id.")
    group_size: int = Field(default=1, ge=1, le=MAX_GROUP_SIZE)
    limit: int = Field(default=10, ge=1, le=MAX_GROUPS_PER_PAGE)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_CHARS)
    filter: Json[PayloadFilter] | None = Field(default=None, examples=[EXAMPLE_FILTER])
    score_threshold: ScoreThreshold | None = None


class FacetRequest(FacetQuery):
    """Counts per value of a payload field among the points matching a filter."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"key": "brand"}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]


class RecommendRequest(RecommendQuery):
    """Items like the positive example items and unlike the negative ones."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"positive": ["sku-01"], "negative": ["sku-02"]}]}
    )

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]


class ClusterRequest(ClusterQuery):
    """Cluster the vectors of the points matching a filter (k-means or density)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"k": 3}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")  # type: ignore[assignment]


# --- near-duplicates ------------------------------------------------------------------------

Threshold = Annotated[
    float,
    Field(ge=-1.0, le=1.0, description="Cosine similarity; default: the model's calibrated one."),
]
DuplicateLimit = Annotated[int, Field(ge=1, le=1000, description="Most duplicates returned.")]


class NearDuplicatesOfItem(BaseModel):
    """Images of other items that near-duplicate any image of this item."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"item_id": "sku-01"}]})

    item_id: ItemId
    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    threshold: Threshold | None = None
    limit: DuplicateLimit = 100


class NearDuplicatesOfImageForm(_Form):
    """Stored images that near-duplicate an uploaded image (multipart/form-data)."""

    image: UploadedFile
    model_id: ModelId | None = None
    threshold: Threshold | None = None
    limit: DuplicateLimit = 100


class NearDuplicates(BaseModel):
    """Near-duplicates above ``threshold``, best first (dismissed pairs left out)."""

    model_id: str
    threshold: float
    hits: list[ScoredPoint]


class DuplicateJobRequest(BaseModel):
    """Start a background search for every duplicate group of a model's collection."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"transitive": False}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    threshold: Threshold | None = None
    transitive: bool = Field(
        default=False, description="Chains A~B~C make one group (else: every pair duplicates)."
    )


class DuplicateJobsQuery(BaseModel):
    """Which model's jobs to list."""

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")


class DuplicateJobList(BaseModel):
    """A model's duplicate jobs, newest first."""

    jobs: list[DuplicateJob]


class DuplicatePageQuery(BaseModel):
    """A page of a finished job's groups."""

    offset: int = Field(default=0, ge=0, le=10_000_000)
    limit: int = Field(default=50, ge=1, le=500)


class DuplicatePair(BaseModel):
    """Two stored images (point ids) a reviewer says are not duplicates."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"point_a": "a", "point_b": "b"}]})

    model_id: ModelId | None = Field(default=None, description="Default: the default model.")
    point_a: str = Field(min_length=1, max_length=100)
    point_b: str = Field(min_length=1, max_length=100)


class DismissalResult(BaseModel):
    """Whether the pair's state changed (False: it already was so)."""

    changed: bool


# --- uploads, events, items -----------------------------------------------------------------


class UploadForm(_Form):
    """Images and their items: repeat ``images``, ``item_id`` (and ``metadata``) in one order."""

    images: Repeated[UploadedFile] = Field(min_length=1, description="The image files.")
    item_id: Repeated[ItemId] = Field(min_length=1, description="Item of each image, in order.")
    metadata: Repeated[Json[Metadata]] | None = Field(
        default=None,
        description="JSON object per image, in order: becomes the payload (e.g. brand, price).",
        examples=[['{"brand": "acme", "price": 12.5}']],
    )
    models: Repeated[ModelId] | None = Field(
        default=None, description="Models to embed with; default: every enabled model."
    )


class AcceptedUpload(BaseModel):
    """An image stored in the blob store and queued for embedding."""

    event_id: str
    item_id: str
    image_uri: str
    image_sha256: str


class UploadAccepted(BaseModel):
    """The queued upload events, in the order of the images."""

    events: list[AcceptedUpload]


class EventAccepted(BaseModel):
    """A queued delete or payload update."""

    event_id: str
    item_id: str


class EventStatusView(BaseModel):
    """Where an event is: queued, done, or failed with its reason."""

    event_id: str
    item_id: str | None = None
    status: EventStatus
    reason: str | None = None
    message: str | None = None
    updated_at: datetime


class ItemQuery(BaseModel):
    """Which collection(s) to read an item from."""

    model_id: ModelId | None = Field(default=None, description="Default: every collection.")
    with_vectors: bool = False


class ItemPoint(BaseModel):
    """One stored image of an item in one model's collection."""

    model_id: str
    point_id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


class ItemView(BaseModel):
    """Every stored image of an item, per model."""

    item_id: str
    points: list[ItemPoint]


class ModelsQuery(BaseModel):
    """Restrict a delete to one model's collection."""

    model_id: ModelId | None = Field(default=None, description="Default: every collection.")


class PayloadUpdate(BaseModel):
    """Metadata merged into every point of the item (system keys are kept)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"metadata": {"price": 9.5}}]})

    metadata: Metadata = Field(min_length=1)
    models: list[ModelId] | None = Field(default=None, description="Default: every collection.")


# --- collections, models, dead letters ------------------------------------------------------


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


class DeadLetterView(BaseModel):
    """An event that could not succeed as it was, with its reason."""

    event_id: str
    task: str
    reason: str
    message: str
    failed_at: datetime
    event: dict[str, Any]


class DeadLetterList(BaseModel):
    """Dead letters, oldest first."""

    count: int
    dead_letters: list[DeadLetterView]


class RetriedEvents(BaseModel):
    """Dead letters put back on the queue."""

    retried: list[str]


# --- health -----------------------------------------------------------------------------------


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
