"""Bad ``LOOKALIKE_*`` settings as one line per variable: its name, what is wrong, what it takes.

Every entry point (the ``lookalike`` command, the app factory, a Celery worker) reads the
settings through ``read_settings`` and prints these lines instead of pydantic's traceback.
The names and expected forms come from the settings' own JSON schema, so a new setting is
described without anything added here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from schemas.settings import Settings

PREFIX = "LOOKALIKE_"
NESTED = "__"
# The exit status of an entry point that refuses its settings: a bad setting is the caller's
# mistake, as a bad command-line option is (click's usage-error status).
BAD_SETTINGS_STATUS = 2
# Values of these are never echoed back: they are, or may hold, secrets.
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")
_SHOWN_CHARACTERS = 60

Schema = dict[str, Any]


class InvalidSettings(Exception):
    """The environment holds settings Lookalike cannot start with; ``lines`` say which."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def read_settings() -> Settings:
    """The settings from the environment, or ``InvalidSettings`` with one line per bad variable."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        raise InvalidSettings(describe_settings_error(error)) from error


def describe_settings_error(
    error: ValidationError | SettingsError, environ: Mapping[str, str] | None = None
) -> list[str]:
    """One line per bad variable: ``NAME='value': problem; expected form (description)``."""
    described = _Described(Settings.model_json_schema(), environ or os.environ)
    if isinstance(error, SettingsError):
        return described.not_json(error)
    problems: dict[tuple[str, ...], list[str]] = {}
    inside: set[tuple[str, ...]] = set()  # variables whose problem is within their JSON value
    for entry in error.errors(include_url=False):
        path, rest = described.variable_of(entry["loc"])
        where = _location(rest)
        message = _message(entry["msg"], entry.get("input"))
        problems.setdefault(path, []).append(f"{where}: {message}" if where else message)
        if rest:
            inside.add(path)
    return [
        described.line(path, "; ".join(found), show_value=path not in inside)
        for path, found in problems.items()
    ]


class _Described:
    """Variable names, values and expected forms, looked up in the settings' JSON schema."""

    def __init__(self, schema: Schema, environ: Mapping[str, str]) -> None:
        self.root = schema
        self.definitions: dict[str, Schema] = schema.get("$defs", {})
        # pydantic-settings reads names case-insensitively.
        self.environ = {name.upper(): value for name, value in environ.items()}

    def resolve(self, schema: Schema) -> Schema:
        """The schema itself, its ``$ref`` followed and a nullable ``anyOf`` unwrapped."""
        if "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]]
        options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
        if len(options) == 1:
            return {**self.resolve(options[0]), **{k: v for k, v in schema.items() if k != "anyOf"}}
        return schema

    def field(self, path: Sequence[str]) -> Schema:
        """The schema of the setting at ``path`` (the root for an empty path)."""
        schema = self.root
        for part in path:
            schema = self.resolve(self.resolve(schema).get("properties", {}).get(part, {}))
        return schema

    def variable_of(self, loc: Sequence[int | str]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        """The setting path one variable holds, and where inside its value the error is."""
        # A variable names nested groups down to a field that is no group (a number, a list).
        depth = 0
        schema = self.resolve(self.root)
        while depth < len(loc) and isinstance(loc[depth], str):
            properties = schema.get("properties", {})
            if loc[depth] not in properties:
                break
            schema = self.resolve(properties[loc[depth]])
            depth += 1
            if "properties" not in schema:
                break
        path = tuple(str(part) for part in loc[:depth])
        # A group given whole as JSON (LOOKALIKE_QUEUE='{...}') is the variable that was set.
        for shorter in range(depth, 0, -1):
            if self.name(path[:shorter]) in self.environ:
                return path[:shorter], (*path[shorter:], *loc[depth:])
        return path, tuple(loc[depth:])

    def name(self, path: Sequence[str]) -> str:
        """The environment variable of a setting path."""
        return PREFIX + NESTED.join(part.upper() for part in path)

    def label(self, path: Sequence[str]) -> str:
        """The variable's name; for a group, the variables of it that are set."""
        name = self.name(path)
        if name in self.environ or "properties" not in self.field(path):
            return name
        inner = sorted(n for n in self.environ if n.startswith(name + NESTED))
        return ", ".join(inner) or f"{name}{NESTED}*"

    def line(self, path: Sequence[str], problem: str, *, show_value: bool) -> str:
        """One variable's line: its name (and value), the problem, the expected form."""
        schema = self.field(path)
        name = self.name(path)
        shown = ""
        value = self.environ.get(name)
        if show_value and value is not None and not self._secret(name, schema):
            text = value if len(value) <= _SHOWN_CHARACTERS else value[:_SHOWN_CHARACTERS] + "..."
            shown = f"={text!r}"
        expected = f"; expected {self.form(schema)}" if path else ""
        description = schema.get("description")
        about = f" ({description.rstrip('.')})" if description and path else ""
        return f"{self.label(path)}{shown}: {problem}{expected}{about}"

    def not_json(self, error: SettingsError) -> list[str]:
        """The variables pydantic-settings could not parse as JSON (lists and groups)."""
        lines = []
        for name, value in sorted(self.environ.items()):
            if not name.startswith(PREFIX):
                continue
            path = [part.lower() for part in name[len(PREFIX) :].split(NESTED)]
            schema = self.field(path)
            if schema.get("type") not in ("array", "object") and "properties" not in schema:
                continue
            try:
                json.loads(value)
            except json.JSONDecodeError as decode_error:
                problem = f"not valid JSON ({decode_error.msg} at character {decode_error.pos})"
                lines.append(self.line(path, problem, show_value=True))
        return lines or [f"{error}: {error.__cause__ or 'see the settings in the README'}"]

    def form(self, schema: Schema) -> str:
        """What a value of this schema looks like, in words."""
        schema = self.resolve(schema)
        if "enum" in schema:
            return "one of " + ", ".join(str(value) for value in schema["enum"])
        options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
        if options:
            return " or ".join(self.form(option) for option in options)
        kind = schema.get("type")
        if kind == "integer":
            return "a whole number" + _bounds(schema)
        if kind == "number":
            return "a number" + _bounds(schema)
        if kind == "boolean":
            return "true or false"
        if kind == "array":
            return self._list_form(self.resolve(schema.get("items", {})))
        if "properties" in schema:
            return f"a JSON object {_keys(schema)}, or one variable per field"
        if kind == "string":
            if schema.get("format") == "path":
                return "a path"
            if "minLength" in schema:
                return f"text of at least {schema['minLength']} characters"
            return "text"
        return "a valid value"

    def _list_form(self, items: Schema) -> str:
        if "properties" in items:
            return f"a JSON list of objects {_keys(items)}"
        if items.get("type") == "string" and "enum" not in items:
            return 'a JSON list of text, e.g. ["a", "b"]'
        return f"a JSON list, each {self.form(items)}"

    def _secret(self, name: str, schema: Schema) -> bool:
        # A group may hold secrets (api.keys, admin.secret_key): its JSON is never echoed.
        return (
            any(word in name for word in _SECRET_WORDS)
            or schema.get("format") == "password"
            or "properties" in schema
        )


def _keys(schema: Schema) -> str:
    return "{" + ", ".join(f'"{key}"' for key in schema["properties"]) + "}"


def _bounds(schema: Schema) -> str:
    limits = [
        f"{symbol} {schema[key]}"
        for key, symbol in (
            ("exclusiveMinimum", ">"),
            ("minimum", ">="),
            ("exclusiveMaximum", "<"),
            ("maximum", "<="),
        )
        if key in schema
    ]
    return (" " + " and ".join(limits)) if limits else ""


def _location(rest: Sequence[Any]) -> str:
    """Where inside a variable's JSON value: ``[0].key``, ``batch_size``."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)
    return text.removeprefix(".")


def _message(message: str, given: Any) -> str:
    message = message.removeprefix("Value error, ")
    if isinstance(given, str):
        # A secret's length check speaks of "items" (SecretStr is validated as a sequence).
        message = message.replace(" items after validation,", " characters,")
    return message[:1].lower() + message[1:]
