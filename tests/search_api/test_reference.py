"""The generated references (configuration, API, .env example) match the code they describe."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from pydantic import BaseModel, Field, ValidationError

from docs.reference import generate as reference
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GENERATED = (
    reference.CONFIGURATION_MD,
    reference.API_MD,
    reference.ENV_EXAMPLE,
    reference.README_MD,
)


def _leaf_variables(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every environment variable of ``model``, walked here independently of the generator."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_variables(annotation, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}"


SETTING_VARIABLES = sorted(_leaf_variables(Settings, "LOOKALIKE_"))


class ProbeSettings(Settings):
    """Settings with one field more than the committed docs know about."""

    reference_probe: int = Field(default=7, description="A setting the docs do not have yet.")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The OpenAPI document the app serves (built once: it starts an app)."""
    return reference.openapi_document()


@pytest.fixture(scope="module")
def generated(document: dict[str, Any]) -> Mapping[Path, str]:
    """What the generator makes from the current code."""
    return reference.generate(document=document)


@pytest.fixture
def cached_document(monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]) -> None:
    """``main`` reuses the module's OpenAPI document instead of starting another app."""
    monkeypatch.setattr(reference, "openapi_document", lambda: document)


def _committed(relative: Path) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


@pytest.mark.parametrize("relative", GENERATED, ids=str)
def test_committed_reference_is_fresh(generated: Mapping[Path, str], relative: Path) -> None:
    assert _committed(relative) == generated[relative], (
        f"{relative} is stale: run `python -m docs.reference` (make docs)"
    )


@pytest.mark.parametrize("variable", SETTING_VARIABLES)
def test_every_setting_is_documented(variable: str) -> None:
    configuration = _committed(reference.CONFIGURATION_MD)
    env_lines = _committed(reference.ENV_EXAMPLE).splitlines()
    assert f"| `{variable}` |" in configuration
    assert sum(line.startswith(f"# {variable}=") for line in env_lines) == 1


def test_env_example_has_no_active_setting() -> None:
    """Copied as is, the example must change nothing: every setting line is commented out."""
    lines = _committed(reference.ENV_EXAMPLE).splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == []
    assert "cp deploy/.env.example deploy/.env" in "\n".join(lines)


def test_every_setting_has_a_description() -> None:
    undocumented = [
        setting.variable
        for section in reference.settings_sections()
        for setting in section.settings
        if not setting.description
    ]
    assert undocumented == []


def test_sections_follow_the_nested_models() -> None:
    names = [section.name for section in reference.settings_sections()]
    nested = [
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    ]
    assert names == [reference.TOP_LEVEL, *nested]
    assert {"images", "sources", "queue", "api", "admin"} <= set(names)


def _attribute(settings: Settings, variable: str) -> Any:
    """The value ``variable`` sets, found by its name alone (prefix, then ``__`` steps)."""
    value: Any = settings
    for step in variable.removeprefix("LOOKALIKE_").lower().split("__"):
        value = getattr(value, step)
    return value


def _other_values(default: str) -> list[tuple[str, Any]]:
    """Values other than ``default`` (env text, parsed value), for booleans and integers."""
    if default in ("true", "false"):
        return [("false", False)] if default == "true" else [("true", True)]
    if default.isdigit():
        number = int(default)
        return [(str(number + 1), number + 1), (str(number - 1), number - 1)]
    return []


def test_documented_names_and_defaults_are_what_settings_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each documented integer or boolean variable, set to another value, reaches Settings."""
    for name in list(os.environ):
        if name.startswith("LOOKALIKE_"):
            monkeypatch.delenv(name)
    checked = 0
    for section in reference.settings_sections():
        for setting in section.settings:
            candidates = _other_values(setting.default or "")
            if not candidates:
                continue
            assert str(_attribute(Settings(), setting.variable)).lower() == setting.default
            for text, value in candidates:
                monkeypatch.setenv(setting.variable, text)
                try:
                    read = _attribute(Settings(), setting.variable)
                except ValidationError:
                    continue  # at a bound: the other candidate is in range
                assert read == value, setting.variable
                break
            else:
                pytest.fail(f"no other value of {setting.variable} was accepted")
            monkeypatch.delenv(setting.variable)
            checked += 1
    assert checked >= 20


def test_computed_defaults_are_not_machine_paths() -> None:
    configuration = _committed(reference.CONFIGURATION_MD)
    env_example = _committed(reference.ENV_EXAMPLE)
    for machine_path in (platformdirs.user_data_dir("lookalike"), str(Path.home())):
        assert machine_path not in configuration
        assert machine_path not in env_example
    assert "| `LOOKALIKE_DATA_DIR` | path | computed per machine" in configuration
    assert "\n# LOOKALIKE_DATA_DIR=\n" in env_example


def test_list_defaults_show_their_value() -> None:
    configuration = _committed(reference.CONFIGURATION_MD)
    assert '`["brand","category"]`' in configuration
    assert '# LOOKALIKE_ADMIN__FACET_FIELDS=["brand","category"]' in _committed(
        reference.ENV_EXAMPLE
    )


def test_every_operation_is_documented(document: dict[str, Any]) -> None:
    api = _committed(reference.API_MD)
    paths = document["paths"]
    assert len(paths) > 10
    for path, methods in paths.items():
        for method, operation in methods.items():
            assert f"### `{method.upper()} {path}`" in api
            for status in operation["responses"]:
                assert f"| `{status}` |" in api


def test_roles_come_from_the_document(document: dict[str, Any]) -> None:
    api = _committed(reference.API_MD)
    collections = document["paths"]["/api/v1/collections"]["get"]
    assert collections["security"]
    assert "| `GET` | `/api/v1/collections` | `search` |" in api
    assert "| `GET` | `/api/v1/deadletters` | `admin` |" in api
    assert "| `GET` | `/healthz` | none (no key needed) |" in api


def test_request_bodies_and_error_body_are_described() -> None:
    api = _committed(reference.API_MD)
    assert "Request body (`application/json`): [SimilarByItem](#similarbyitem)" in api
    assert "Request body (`multipart/form-data`): [UploadForm](#uploadform)" in api
    assert '{"error": {"code": "item_not_found", "message": "...", "details": {}}}' in api
    assert "### ErrorDetail" in api


def test_operations_are_sorted(document: dict[str, Any]) -> None:
    found = [(op.path, op.method) for op in reference.operations(document)]
    assert [path for path, _ in found] == sorted(path for path, _ in found)
    assert len(found) == sum(len(methods) for methods in document["paths"].values())


def test_generation_is_deterministic(generated: Mapping[Path, str]) -> None:
    again = reference.generate(document=reference.openapi_document())
    assert again == generated


@pytest.mark.usefixtures("cached_document")
def test_check_fails_when_a_setting_is_added(capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--check"], settings_cls=ProbeSettings) == 1
    err = capsys.readouterr().err
    assert "stale generated reference(s): docs/configuration.md, deploy/.env.example;" in err
    assert "docs/api.md" not in err.splitlines()[-1]
    assert "LOOKALIKE_REFERENCE_PROBE" in err  # the diff shows what is missing


def test_probe_setting_is_rendered() -> None:
    configuration = reference.render_configuration(ProbeSettings)
    env_example = reference.render_env_example(ProbeSettings)
    assert "| `LOOKALIKE_REFERENCE_PROBE` | integer | `7` |" in configuration
    assert "# A setting the docs do not have yet. Type: integer.\n" in env_example
    assert "# LOOKALIKE_REFERENCE_PROBE=7\n" in env_example


@pytest.mark.usefixtures("cached_document")
def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert reference.main(["--check", "--root", str(tmp_path)]) == 0
    api_md = tmp_path / reference.API_MD
    api_md.write_text(api_md.read_text() + "hand edit\n")
    capsys.readouterr()
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale generated reference(s): docs/api.md;" in capsys.readouterr().err
    assert reference.main(["--root", str(tmp_path)]) == 0
    assert "hand edit" not in api_md.read_text()


def test_module_runs_from_the_command_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "docs.reference", "--check", "--root", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "docs/configuration.md, docs/api.md, deploy/.env.example" in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<data_dir>/blobs", "&lt;data_dir>/blobs"),
        ("a `<prefix>` b", "a `<prefix>` b"),
        ("x | y", "x \\| y"),
        ("> 0, <= 1024", "> 0, <= 1024"),
        ("``double``", "`double`"),
    ],
)
def test_md_text_escapes(text: str, expected: str) -> None:
    assert reference.md_text(text) == expected


def test_schema_type_names() -> None:
    nullable = {"anyOf": [{"$ref": "#/components/schemas/PayloadFilter"}, {"type": "null"}]}
    assert reference.schema_type(nullable) == "[PayloadFilter](#payloadfilter) or null"
    union_items = {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}
    assert reference.schema_type(union_items) == "array of (string or integer)"
    assert reference.schema_type({"type": "string", "format": "binary"}) == "file"
    assert reference.schema_type({"type": "integer", "minimum": 1}) == "integer (>= 1)"
