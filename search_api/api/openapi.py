"""The OpenAPI document (spectree, from the pydantic schemas) and the ``endpoint`` decorator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, cast

from flask import Request, current_app, request
from pydantic import BaseModel, ValidationError
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.model_adapter.protocol import ModelAdapter
from spectree.model_adapter.pydantic_adapter import PydanticModelAdapter
from spectree.models import InType, SecureType

from schemas.api.common import ErrorBody
from schemas.settings import ApiRole
from search_api.web.auth import BEARER_SCHEME, HEADER_SCHEME, SECURITY
from search_api.web.errors import ApiError, validation_error
from search_api.web.services import current_services

API_PREFIX = "/api/v1"
DOCS_PATH = "api/v1/docs"  # Swagger UI etc. at /api/v1/docs/<ui>/
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_BODYLESS = ("GET", "DELETE", "HEAD", "OPTIONS")
# Errors every endpoint of a role may answer with; views add the ones specific to them.
_ROLE_ERRORS = (401, 403, 422, 503)


def _raise_request_errors(
    req: Request, resp: Any, error: Exception | None, instance: Any, adapter: Any
) -> None:
    """Spectree's hook after validating a request: our error body instead of spectree's."""
    _check_body_type(req)
    if isinstance(error, ValidationError):
        raise validation_error(error)
    if error is not None:
        raise ApiError(422, "validation_error", str(error), {"field": "body"})


def _check_body_type(req: Request) -> None:
    """415 for a body of the wrong media type (spectree would silently not read it)."""
    if req.method in _BODYLESS or req.endpoint is None:
        return
    metadata = spec.get_function_metadata(current_app.view_functions[req.endpoint])
    if metadata is None:
        return
    if metadata.json is not None:
        if not req.is_json:
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        if req.get_json(silent=True) is None:
            raise ApiError(
                422, "invalid_json", "the body is not valid JSON (an object)", {"field": "body"}
            )
    if metadata.form is not None and req.mimetype not in _FORM_TYPES:
        raise ApiError(415, "unsupported_media_type", "send the body as multipart/form-data")


class _ModelAdapter(PydanticModelAdapter):
    """Spectree's pydantic adapter, minus the inputs in error lists (file parts are bytes)."""

    def validation_errors(self, err: ValidationError) -> Any:
        """JSON-safe errors: spectree serializes them before our hook replaces its response."""
        return err.errors(include_context=False, include_input=False, include_url=False)


@dataclass(frozen=True)
class _Extras:
    """What spectree cannot document itself: a non-JSON success body, path parameter formats."""

    status: int
    media_types: tuple[str, ...]
    path_patterns: Mapping[str, str]


# Keyed by the view function Flask routes to (the one `endpoint` returns).
_EXTRAS: dict[Callable[..., Any], _Extras] = {}


class _SpecTree(SpecTree):
    """Spectree, with the extras `endpoint` was given added to the generated document."""

    def _generate_spec(self) -> dict[str, Any]:
        document = super()._generate_spec()
        for route in self.backend.find_routes():
            for method, func in self.backend.parse_func(route):
                extras = _EXTRAS.get(func)
                path, _ = self.backend.parse_path(route, None)
                operation = document["paths"].get(path, {}).get(method.lower())
                if extras is not None and operation is not None:
                    _add_extras(operation, extras)
        return document


def _add_extras(operation: dict[str, Any], extras: _Extras) -> None:
    if extras.media_types:
        response = operation["responses"][str(extras.status)]
        response["content"] = {
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in extras.media_types
        }
    for parameter in operation["parameters"]:
        pattern = extras.path_patterns.get(parameter["name"])
        if parameter["in"] == "path" and pattern is not None:
            parameter["schema"] = {**parameter["schema"], "pattern": pattern}


spec = _SpecTree(
    "flask",
    mode="strict",  # only routes declared with `endpoint` are documented
    path=DOCS_PATH,
    title="Lookalike API",
    version="1",
    description=(
        "Visual similarity search. Every error answers with "
        '`{"error": {"code", "message", "details"}}`. Send an API key as '
        "`Authorization: Bearer <key>` or `X-API-Key: <key>` unless the server runs open."
    ),
    validation_error_status=422,
    validation_error_model=ErrorBody,
    before=_raise_request_errors,
    # Spectree's protocol types the error as Exception, its own pydantic adapter narrows it.
    model_adapter=cast("ModelAdapter[Any, Exception, Any]", _ModelAdapter()),
    naming_strategy=lambda model: model.__name__,
    # One shared component per nested model (PayloadFilter, ScoredPoint ...), not one per user.
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(
            name=BEARER_SCHEME, data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer")
        ),
        SecurityScheme(
            name=HEADER_SCHEME,
            data=SecuritySchemeData(
                type=SecureType.API_KEY, name="X-API-Key", field_in=InType.HEADER
            ),
        ),
    ],
)


def endpoint(
    role: ApiRole | None,
    model: type[BaseModel] | None,
    *,
    status: int = 200,
    errors: Iterable[int] = (),
    tags: Sequence[str] = (),
    media_type: str | Sequence[str] | None = None,
    path_patterns: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Document and validate a view (request models come from its annotations); check role.

    ``media_type`` documents a success body that is not JSON (``model`` None, the view returns
    a Response), or the several it may be; ``path_patterns`` the regular expression each named
    path parameter matches.
    """
    media_types = (media_type,) if isinstance(media_type, str) else tuple(media_type or ())
    codes = sorted({*(_ROLE_ERRORS if role else ()), *errors})
    responses: dict[str, Any] = {f"HTTP_{code}": ErrorBody for code in codes}
    responses[f"HTTP_{status}"] = model

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        validated = spec.validate(
            resp=Response(**responses),
            tags=tags,
            security=SECURITY if role else [],
        )(view)

        @wraps(validated)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # Before validation: a caller without the right key learns nothing about the body.
            if role is not None:
                current_services().keys.authorize(request, role)
            return validated(*args, **kwargs)

        if role is not None:
            guarded.__doc__ = f"{(view.__doc__ or '').strip()}\n\nRole: `{role.value}`."
        if media_types or path_patterns:
            _EXTRAS[guarded] = _Extras(status, media_types, dict(path_patterns or {}))
        return guarded

    return decorate
