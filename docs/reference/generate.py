"""Generated references: docs/configuration.md, docs/api.md, deploy/.env.example and the
README's list of image formats.

``python -m docs.reference`` writes them; ``--check`` only compares, and exits non-zero
naming every stale file, so CI catches a setting or endpoint whose documentation was not
regenerated. Everything is derived from ``Settings`` and the app's OpenAPI document.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings

from docs.reference.formats import render_readme
from schemas.settings import ApiKey, ApiRole, ApiSettings, Settings

ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/reference/generate.py
CONFIGURATION_MD = Path("docs/configuration.md")
API_MD = Path("docs/api.md")
ENV_EXAMPLE = Path("deploy/.env.example")
README_MD = Path("README.md")
OPENAPI_URL = "/api/v1/openapi.json"
REGENERATE = "python -m docs.reference"  # what a stale-file message tells people to run
TOP_LEVEL = "top level"
_HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_HTML_OPENER = re.compile(r"<(?=[A-Za-z/!?])")  # what CommonMark would start a tag with
_ROLE_SENTENCE = re.compile(r"\s*Role: `(?P<role>[a-z_]+)`\.\s*")
_SCALARS: Mapping[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    Path: "path",
    SecretStr: "secret string",
}


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingDoc:
    """One environment variable: where it sits, its type, default and description."""

    section: str
    variable: str
    type_text: str
    default: str | None  # the value as written in an env file; None: unset or computed
    computed: bool  # the default depends on the machine (a platform directory)
    description: str
    annotation: Any


@dataclass(frozen=True)
class SectionDoc:
    """The settings of one nested model (or the top level), with its docstring."""

    name: str
    prefix: str
    summary: str
    settings: tuple[SettingDoc, ...]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model class of a nested-settings field (not Optional: those are JSON leaves)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _constraint_texts(metadata: Sequence[Any]) -> list[str]:
    """Readable bounds from annotated-types metadata (pydantic's internal markers skipped)."""
    texts: list[str] = []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            texts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            texts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            texts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            texts.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.MinLen):
            texts.append(f"length >= {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            texts.append(f"length <= {item.max_length}")
    return texts


def _with_constraints(text: str, metadata: Sequence[Any]) -> str:
    """``text`` followed by its bounds, if any."""
    bounds = _constraint_texts(metadata)
    return f"{text} {', '.join(bounds)}" if bounds else text


def type_text(annotation: Any) -> str:
    """A short human name of a settings type, as written in an environment variable."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return _with_constraints(type_text(args[0]), args[1:])
    if origin in (Union, types.UnionType):
        # None only means "unset", which the default column already says.
        return " or ".join(type_text(arg) for arg in args if arg is not type(None))
    if origin in (list, tuple, set, frozenset):
        return f"JSON list of {type_text(args[0])}" if args else "JSON list"
    if origin is dict:
        return "JSON object"
    if origin is Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object {" + ", ".join(annotation.model_fields) + "}"
    return str(annotation)


def _contains_path(value: Any) -> bool:
    """Whether a default holds a filesystem path (machine-specific when computed)."""
    if isinstance(value, PurePath):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(_contains_path(item) for item in value)
    return False


def env_value(value: Any) -> str | None:
    """How a default is written in an environment variable; None for unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str | int | float | PurePath):
        return str(value)
    # Lists and objects are JSON in the environment; compact, so the line needs no quoting.
    return json.dumps(to_jsonable_python(value), separators=(",", ":"))


def _default(field: FieldInfo) -> tuple[str | None, bool]:
    """The default as an env value, and whether it is computed per machine."""
    if field.default_factory is None:
        return env_value(field.default), False
    if field.default_factory_takes_validated_data:
        return None, True
    value = field.get_default(call_default_factory=True)
    # A platform directory (data_dir, models_dir) differs per machine: never print it.
    if _contains_path(value):
        return None, True
    return env_value(value), False


def _leaf(name: str, field: FieldInfo, prefix: str, section: str) -> SettingDoc:
    """The documentation of one leaf setting."""
    default, computed = _default(field)
    return SettingDoc(
        section=section,
        variable=f"{prefix}{name}".upper(),
        type_text=_with_constraints(type_text(field.annotation), field.metadata),
        default=default,
        computed=computed,
        description=" ".join((field.description or "").split()),
        annotation=field.annotation,
    )


def _leaves(
    model: type[BaseModel], prefix: str, delimiter: str, section: str
) -> Iterator[SettingDoc]:
    """Every leaf setting of ``model``, deeper nested models flattened with ``delimiter``."""
    for name, field in model.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is None:
            yield _leaf(name, field, prefix, section)
        else:
            yield from _leaves(nested, f"{prefix}{name}{delimiter}".upper(), delimiter, section)


def _summary(model: type[BaseModel]) -> str:
    """A model's docstring on one line, reST double backticks made Markdown."""
    return " ".join((model.__doc__ or "").split()).replace("``", "`")


def settings_sections(settings_cls: type[BaseSettings] | None = None) -> list[SectionDoc]:
    """The settings grouped as documented: top-level leaves first, then each nested model."""
    cls = settings_cls or Settings
    env_prefix = (cls.model_config.get("env_prefix") or "").upper()
    delimiter = cls.model_config.get("env_nested_delimiter") or "__"
    top: list[SettingDoc] = []
    nested_sections: list[SectionDoc] = []
    for name, field in cls.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is None:
            top.append(_leaf(name, field, env_prefix, TOP_LEVEL))
            continue
        prefix = f"{env_prefix}{name}{delimiter}".upper()
        leaves = tuple(_leaves(nested, prefix, delimiter, name))
        nested_sections.append(SectionDoc(name, prefix, _summary(nested), leaves))
    return [SectionDoc(TOP_LEVEL, env_prefix, _summary(cls), tuple(top)), *nested_sections]


# --- Markdown helpers ----------------------------------------------------------------------


def md_text(text: str) -> str:
    """Text safe in a Markdown table cell: pipes escaped, ``<tag>`` not read as HTML."""
    parts = " ".join(text.split()).replace("``", "`").split("`")
    # Odd parts are code spans, where < is literal; outside them "<data_dir>" would be HTML.
    for index in range(0, len(parts), 2):
        parts[index] = _HTML_OPENER.sub("&lt;", parts[index])
    return "`".join(parts).replace("|", "\\|")


def md_code(text: str) -> str:
    """An inline code span of ``text`` (a pipe escaped: GitHub tables split on it)."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}".replace("|", "\\|")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub Markdown table; cells must already be escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _generated_note(source: str) -> str:
    """The do-not-edit marker at the top of every generated Markdown file."""
    return f"<!-- Generated from {source} by `{REGENERATE}` (`make docs`). Do not edit. -->"


# --- docs/configuration.md -----------------------------------------------------------------


def _default_cell(setting: SettingDoc) -> str:
    """The default column of a setting."""
    if setting.computed:
        return "computed per machine (see description)"
    if setting.default is None:
        return "unset"
    if setting.default == "":
        return '`""` (empty)'
    return md_code(setting.default)


def _object_fields_table(model: type[BaseModel]) -> list[str]:
    """The fields of a JSON object a list setting holds (API keys)."""
    rows = [
        [
            md_code(name),
            md_text(_with_constraints(type_text(field.annotation), field.metadata)),
            "yes" if field.is_required() else "no",
            md_text(field.description or ""),
        ]
        for name, field in model.model_fields.items()
    ]
    return md_table(["field", "type", "required", "description"], rows)


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of the items of a ``list[Model]`` setting, if it is one."""
    args = get_args(annotation)
    if get_origin(annotation) is list and args:
        return _nested_model(args[0])
    return None


def _section_markdown(section: SectionDoc) -> list[str]:
    """One section of configuration.md: heading, docstring, table, object shapes."""
    title = "Top level" if section.name == TOP_LEVEL else f"`{section.name}`"
    lines = [f"## {title}", "", md_text(section.summary), ""]
    rows = [
        [
            md_code(setting.variable),
            md_text(setting.type_text),
            _default_cell(setting),
            md_text(setting.description),
        ]
        for setting in section.settings
    ]
    lines.extend(md_table(["variable", "type", "default", "description"], rows))
    for setting in section.settings:
        item_model = _list_item_model(setting.annotation)
        if item_model is not None:
            lines.extend(["", f"Each object of {md_code(setting.variable)}:", ""])
            lines.extend(_object_fields_table(item_model))
    lines.append("")
    return lines


def render_configuration(settings_cls: type[BaseSettings] | None = None) -> str:
    """docs/configuration.md: every ``LOOKALIKE_*`` variable, grouped by section."""
    sections = settings_sections(settings_cls)
    example = _example_nested_variable(sections)
    lines = [
        "# Configuration",
        "",
        _generated_note("`schemas.settings.Settings`"),
        "",
        "Lookalike reads its settings from environment variables with the prefix "
        f"`{sections[0].prefix}`; nested settings join their names with `__` (for example "
        f"{md_code(example)}). Lists and objects are written as JSON. Every setting has a "
        "working default: with none set, Lookalike runs the embedded stack (its own Redis, "
        "Qdrant's engine on disk). With Docker Compose, copy `deploy/.env.example` to "
        "`deploy/.env` and uncomment what you change.",
        "",
    ]
    for section in sections:
        lines.extend(_section_markdown(section))
    return "\n".join(lines).rstrip("\n") + "\n"


def _example_nested_variable(sections: Sequence[SectionDoc]) -> str:
    """A real nested variable name for the introduction's example."""
    for section in sections[1:]:
        if section.settings:
            return section.settings[0].variable
    return f"{sections[0].prefix}SECTION__NAME"


# --- deploy/.env.example -------------------------------------------------------------------

_ENV_HEADER = """\
# Lookalike settings: every LOOKALIKE_* variable with its default, commented out.
# Generated from schemas.settings.Settings by `python -m docs.reference` (`make docs`);
# do not edit this file, edit your copy:
#
#   cp deploy/.env.example deploy/.env
#
# then uncomment and change the lines you need. Docker Compose reads deploy/.env (it sits
# next to deploy/compose.yaml) and the services get the settings from it. Nested settings
# join names with "__"; lists and objects are JSON. A line with nothing after "=" is unset by
# default (or computed per machine): give it a value when you uncomment it, never leave it
# empty. Reference with types: docs/configuration.md.
"""


def _comment(text: str) -> list[str]:
    """``text`` as wrapped ``#`` comment lines."""
    plain = " ".join(text.split()).replace("``", "`")
    return ["# " + line for line in textwrap.wrap(plain, width=94)] or ["#"]


def render_env_example(settings_cls: type[BaseSettings] | None = None) -> str:
    """deploy/.env.example: each setting commented out, below its description."""
    lines = [_ENV_HEADER.rstrip("\n")]
    for section in settings_sections(settings_cls):
        title = "Top level" if section.name == TOP_LEVEL else f"{section.name} ({section.prefix}*)"
        lines.extend(["", "", "# " + "=" * 94, f"# {title}", *_comment(section.summary)])
        lines.append("# " + "=" * 94)
        for setting in section.settings:
            lines.append("")
            lines.extend(_comment(f"{setting.description} Type: {setting.type_text}."))
            lines.append(f"# {setting.variable}={setting.default or ''}")
    return "\n".join(lines) + "\n"


# --- docs/api.md ---------------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document exactly as the app serves it at /api/v1/openapi.json."""
    from search_api.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="lookalike-reference-") as data_dir:
        # A key, so the app does not log its open-API warning; nothing is opened or served.
        api = ApiSettings(
            keys=[ApiKey(name="reference", key=SecretStr("r" * 32), roles=[ApiRole.SEARCH])]
        )
        settings = Settings(data_dir=Path(data_dir), api=api)
        app = create_app(settings)
        response = app.test_client().get(OPENAPI_URL)
        if response.status_code != 200:
            raise RuntimeError(f"GET {OPENAPI_URL} answered {response.status_code}")
        document: dict[str, Any] = response.get_json()
    return document


def _ref_name(ref: str) -> str:
    """``#/components/schemas/Name`` -> ``Name``."""
    return ref.rsplit("/", 1)[-1]


def _schema_link(name: str) -> str:
    """A link to a schema's section (GitHub's anchor of a ``### Name`` heading)."""
    return f"[{name}](#{name.lower()})"


def _bounds(schema: Mapping[str, Any]) -> list[str]:
    """Readable JSON-schema bounds of a property."""
    texts: list[str] = []
    for key, template in (
        ("minimum", ">= {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "<= {}"),
        ("exclusiveMaximum", "< {}"),
        ("minLength", "length >= {}"),
        ("maxLength", "length <= {}"),
        ("minItems", "items >= {}"),
        ("maxItems", "items <= {}"),
    ):
        if key in schema:
            texts.append(template.format(schema[key]))
    return texts


def _alternatives(schemas: Sequence[Mapping[str, Any]]) -> str:
    """``A or B``, with ``null`` last (an optional value)."""
    nullable = any(part.get("type") == "null" for part in schemas)
    names = [schema_type(part) for part in schemas if part.get("type") != "null"]
    return " or ".join([*names, "null"] if nullable else names)


def schema_type(schema: Mapping[str, Any]) -> str:
    """A short Markdown description of a JSON-schema type (links to named schemas)."""
    if "$ref" in schema:
        return _schema_link(_ref_name(schema["$ref"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _alternatives(schema[key])
    if len(schema.get("allOf", ())) == 1:
        return schema_type(schema["allOf"][0])
    if "enum" in schema:
        return "one of " + ", ".join(md_code(json.dumps(value)) for value in schema["enum"])
    if "const" in schema:
        return md_code(json.dumps(schema["const"]))
    text = _base_type(schema)
    bounds = _bounds(schema)
    if "pattern" in schema:
        bounds.append("pattern " + md_code(schema["pattern"]))
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _base_type(schema: Mapping[str, Any]) -> str:
    """The type of a schema without alternatives or bounds."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(str(part) for part in kind)
    if kind == "array":
        items = schema_type(schema.get("items", {}))
        return f"array of ({items})" if " or " in items else f"array of {items}"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"object of {schema_type(values)}" if isinstance(values, dict) else "object"
    if kind == "string" and schema.get("format") == "binary":
        return "file"
    if kind == "string" and "contentSchema" in schema:
        return f"JSON text of {schema_type(schema['contentSchema'])}"
    if kind == "string" and "format" in schema:
        return f"string ({schema['format']})"
    return str(kind) if kind else "any"


def _description(schema: Mapping[str, Any]) -> str:
    """A property's description, also when pydantic put it inside an ``anyOf`` branch."""
    if schema.get("description"):
        return str(schema["description"])
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, ()):
            if part.get("description"):
                return str(part["description"])
    return ""


def _fields_table(schema: Mapping[str, Any]) -> list[str]:
    """The properties of an object schema, in declaration order."""
    required = set(schema.get("required", ()))
    rows = [
        [
            md_code(name),
            schema_type(prop),
            "yes" if name in required else "no",
            md_code(json.dumps(prop["default"])) if "default" in prop else "",
            md_text(_description(prop)),
        ]
        for name, prop in schema.get("properties", {}).items()
    ]
    return md_table(["field", "type", "required", "default", "description"], rows)


@dataclass(frozen=True)
class Operation:
    """One method on one path of the OpenAPI document."""

    method: str
    path: str
    spec: Mapping[str, Any]

    @property
    def role(self) -> str:
        """The API-key role the operation needs, as the ``endpoint`` decorator documents it."""
        found = _ROLE_SENTENCE.search(self.spec.get("description", ""))
        if found is not None:
            return md_code(found["role"])
        return "any API key" if self.spec.get("security") else "none (no key needed)"

    @property
    def notes(self) -> str:
        """The operation's description beyond its summary, without the role sentence."""
        return _ROLE_SENTENCE.sub(" ", self.spec.get("description", "")).strip()


def operations(document: Mapping[str, Any]) -> list[Operation]:
    """Every operation, sorted by path and then by the usual method order."""
    found = [
        Operation(method.upper(), path, spec)
        for path, methods in document.get("paths", {}).items()
        for method, spec in methods.items()
        if method in _HTTP_METHODS
    ]
    return sorted(found, key=lambda op: (op.path, _HTTP_METHODS.index(op.method.lower())))


def _parameters_markdown(operation: Operation) -> list[str]:
    """The path and query parameters of an operation."""
    parameters = sorted(
        operation.spec.get("parameters", []), key=lambda p: (p["in"] != "path", p["name"])
    )
    if not parameters:
        return []
    rows = [
        [
            md_code(parameter["name"]),
            parameter["in"],
            schema_type(parameter.get("schema", {})),
            "yes" if parameter.get("required") else "no",
            md_text(parameter.get("description") or _description(parameter.get("schema", {}))),
        ]
        for parameter in parameters
    ]
    return ["Parameters:", "", *md_table(["name", "in", "type", "required", "description"], rows)]


def _request_markdown(operation: Operation, schemas: Mapping[str, Any]) -> list[str]:
    """The request body of an operation: media type, schema name and its fields."""
    body = operation.spec.get("requestBody")
    if not body:
        return []
    lines: list[str] = []
    for media_type, content in sorted(body.get("content", {}).items()):
        schema = content.get("schema", {})
        if "$ref" in schema:
            name = _ref_name(schema["$ref"])
            lines.extend([f"Request body ({md_code(media_type)}): {_schema_link(name)}", ""])
            lines.extend(_fields_table(schemas.get(name, {})))
        else:
            lines.append(f"Request body ({md_code(media_type)}): {schema_type(schema)}")
    return lines


def _response_body(response: Mapping[str, Any]) -> str:
    """What a response carries: a linked schema, or a media type."""
    parts = []
    for media_type, content in sorted(response.get("content", {}).items()):
        schema = content.get("schema", {})
        if media_type == "application/json" and schema:
            parts.append(schema_type(schema))
        else:
            parts.append(f"{md_code(media_type)} {schema_type(schema)}".strip())
    return ", ".join(parts) or "not documented"


def _responses_markdown(operation: Operation) -> list[str]:
    """Status codes of an operation with their bodies."""
    responses = operation.spec.get("responses", {})
    rows = [
        [md_code(status), md_text(responses[status].get("description", "")), body]
        for status in sorted(responses)
        for body in [_response_body(responses[status])]
    ]
    return ["Responses:", "", *md_table(["status", "meaning", "body"], rows)]


def _operation_markdown(operation: Operation, schemas: Mapping[str, Any]) -> list[str]:
    """One operation's section."""
    tags = ", ".join(operation.spec.get("tags", [])) or "none"
    lines = [f"### `{operation.method} {operation.path}`", ""]
    lines.extend([md_text(operation.spec.get("summary", "")), ""])
    if operation.notes:
        lines.extend([md_text(operation.notes), ""])
    lines.extend([f"Role: {operation.role} · tag: {md_text(tags)}", ""])
    for block in (
        _parameters_markdown(operation),
        _request_markdown(operation, schemas),
        _responses_markdown(operation),
    ):
        if block:
            lines.extend([*block, ""])
    return lines


def _error_markdown(schemas: Mapping[str, Any]) -> list[str]:
    """The one error body every non-2xx response uses."""
    example = {"error": {"code": "item_not_found", "message": "...", "details": {}}}
    lines = [
        "## Errors",
        "",
        "Every error response, whatever its status, has one body: "
        f"{_schema_link('ErrorBody')}, an `error` object ({_schema_link('ErrorDetail')}).",
        "",
        "```json",
        json.dumps(example),
        "```",
        "",
    ]
    if "ErrorDetail" in schemas:
        lines.extend([*_fields_table(schemas["ErrorDetail"]), ""])
    return lines


def _status_summary(ops: Sequence[Operation]) -> list[str]:
    """Every status code the API documents, with its meaning."""
    meanings: dict[str, str] = {}
    for op in ops:
        for status, response in op.spec.get("responses", {}).items():
            meanings.setdefault(status, response.get("description", ""))
    rows = [[md_code(status), md_text(meanings[status])] for status in sorted(meanings)]
    return md_table(["status", "meaning"], rows)


def _schemas_markdown(schemas: Mapping[str, Any]) -> list[str]:
    """Every named schema (request and response bodies, their parts), alphabetically."""
    lines = ["## Schemas", ""]
    for name in sorted(schemas):
        schema = schemas[name]
        lines.extend([f"### {name}", ""])
        if schema.get("description"):
            lines.extend([md_text(schema["description"]), ""])
        if "properties" in schema:
            lines.extend([*_fields_table(schema), ""])
        else:
            lines.extend([f"Type: {schema_type(schema)}", ""])
    return lines


def _security_markdown(document: Mapping[str, Any]) -> list[str]:
    """How to send an API key, from the document's security schemes."""
    schemes = document.get("components", {}).get("securitySchemes", {})
    rows = []
    for name in sorted(schemes):
        scheme = schemes[name]
        if scheme.get("type") == "http":
            how = f"`Authorization: {str(scheme.get('scheme', '')).capitalize()} <key>`"
        else:
            how = f"`{scheme.get('name', '')}: <key>` ({scheme.get('in', '')})"
        rows.append([md_code(name), md_text(how)])
    return [
        "## Authentication and roles",
        "",
        "An operation with a role needs an API key holding that role (a key with `admin` may "
        "call everything); send it in either way below. With no keys configured "
        "(`LOOKALIKE_API__KEYS` empty) the server runs open and needs none. A missing or "
        "unknown key answers 401, a key without the role 403.",
        "",
        *md_table(["scheme", "header"], rows),
        "",
    ]


def render_api(document: Mapping[str, Any]) -> str:
    """docs/api.md from an OpenAPI document."""
    info = document.get("info", {})
    schemas = document.get("components", {}).get("schemas", {})
    ops = operations(document)
    overview = [
        [md_code(op.method), md_code(op.path), op.role, md_text(op.spec.get("summary", ""))]
        for op in ops
    ]
    lines = [
        f"# {info.get('title', 'API')} (version {info.get('version', '?')})",
        "",
        _generated_note(f"the OpenAPI document (`GET {OPENAPI_URL}`)"),
        "",
        md_text(info.get("description", "")),
        "",
        f"The live document is served at `{OPENAPI_URL}`, with Swagger UI at "
        "`/api/v1/docs/swagger/`. Request and response bodies are JSON unless noted.",
        "",
        *_security_markdown(document),
        *_error_markdown(schemas),
        "Status codes used:",
        "",
        *_status_summary(ops),
        "",
        "## Operations",
        "",
        *md_table(["method", "path", "role", "summary"], overview),
        "",
    ]
    for op in ops:
        lines.extend(_operation_markdown(op, schemas))
    lines.extend(_schemas_markdown(schemas))
    return "\n".join(lines).rstrip("\n") + "\n"


# --- generation and --check ----------------------------------------------------------------


def generate(
    settings_cls: type[BaseSettings] | None = None, document: Mapping[str, Any] | None = None
) -> dict[Path, str]:
    """Every generated file (path relative to the repository) and its content."""
    return {
        CONFIGURATION_MD: render_configuration(settings_cls),
        API_MD: render_api(document if document is not None else openapi_document()),
        ENV_EXAMPLE: render_env_example(settings_cls),
        README_MD: render_readme((ROOT / README_MD).read_text(encoding="utf-8")),
    }


def stale_files(root: Path, outputs: Mapping[Path, str]) -> list[Path]:
    """The generated files that are missing under ``root`` or differ from ``outputs``."""
    stale = []
    for relative, text in outputs.items():
        target = root / relative
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(relative)
    return stale


def _diff(root: Path, relative: Path, text: str, limit: int = 40) -> str:
    """The first lines of a unified diff, committed -> generated, to show what drifted."""
    target = root / relative
    old = target.read_text(encoding="utf-8").splitlines() if target.is_file() else []
    lines = list(
        difflib.unified_diff(
            old,
            text.splitlines(),
            f"{relative} (committed)",
            f"{relative} (generated)",
            n=2,
            lineterm="",
        )
    )
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... {len(lines) - limit} more diff lines")
    return "\n".join(shown)


def write(root: Path, outputs: Mapping[Path, str]) -> list[Path]:
    """Write the files that changed; returns them."""
    changed = stale_files(root, outputs)
    for relative in changed:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(outputs[relative], encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None, settings_cls: type[BaseSettings] | None = None) -> int:
    """Command line: write the references, or with ``--check`` report stale ones (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m docs.reference",
        description="Generate docs/configuration.md, docs/api.md and deploy/.env.example.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this)")
    args = parser.parse_args(argv)
    outputs = generate(settings_cls)
    if not args.check:
        for relative in write(args.root, outputs):
            print(f"wrote {relative}")
        return 0
    stale = stale_files(args.root, outputs)
    if not stale:
        return 0
    for relative in stale:
        print(_diff(args.root, relative, outputs[relative]), file=sys.stderr)
    names = ", ".join(str(relative) for relative in stale)
    print(
        f"stale generated reference(s): {names}; regenerate with `{REGENERATE}` (or `make docs`)"
        " and commit the result",
        file=sys.stderr,
    )
    return 1
