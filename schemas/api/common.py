"""Types, validators and bases the API bodies share: ids, vectors, metadata, forms, errors."""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

MAX_VECTOR_DIMENSION = 4096
# Qdrant walks `offset` points before the first result: deep pages cost as much as big ones.
MAX_OFFSET = 100_000

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


class FormBody(BaseModel):
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


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code, a message for people, and details."""

    code: str = Field(description="e.g. validation_error, item_not_found, invalid_image.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The one error body of every non-2xx response."""

    error: ErrorDetail
