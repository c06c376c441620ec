"""Bad LOOKALIKE_* settings become one line per variable: name, problem, expected form."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from schemas.settings import Settings
from schemas.settings_errors import InvalidSettings, describe_settings_error, read_settings

BAD_KEYS = '[{"name": "catalog", "key": "too-short", "roles": ["search", "bogus"]}]'


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without the developer's own LOOKALIKE_* variables."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("LOOKALIKE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def lines_for(env: pytest.MonkeyPatch, **variables: str) -> list[str]:
    """What a start with these variables reports."""
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises((ValidationError, SettingsError)) as raised:
        Settings()
    assert isinstance(raised.value, ValidationError | SettingsError)
    return describe_settings_error(raised.value)


def test_each_bad_variable_is_one_line_naming_it_and_the_expected_form(
    clean_env: pytest.MonkeyPatch,
) -> None:
    lines = lines_for(
        clean_env,
        LOOKALIKE_QUEUE__BATCH_SIZE="abc",
        LOOKALIKE_API__KEYS=BAD_KEYS,
        LOOKALIKE_TTA_FLIP="maybe",
    )

    assert len(lines) == 3, lines
    by_name = {line.split(":")[0].split("=")[0]: line for line in lines}
    assert set(by_name) == {
        "LOOKALIKE_QUEUE__BATCH_SIZE",
        "LOOKALIKE_API__KEYS",
        "LOOKALIKE_TTA_FLIP",
    }
    batch = by_name["LOOKALIKE_QUEUE__BATCH_SIZE"]
    assert batch.startswith("LOOKALIKE_QUEUE__BATCH_SIZE='abc': ")
    assert "expected a whole number > 0" in batch
    keys = by_name["LOOKALIKE_API__KEYS"]
    # Both problems of the one variable on its line, where in the list they are, no secret.
    assert "[0].key: " in keys
    assert "[0].roles[1]: " in keys
    assert "too-short" not in keys
    assert '"name", "key", "roles"' in keys  # the expected shape, from the setting's description
    assert "expected true or false" in by_name["LOOKALIKE_TTA_FLIP"]
    assert all("\n" not in line for line in lines)


def test_a_variable_that_is_not_json_is_named(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = lines_for(clean_env, LOOKALIKE_API__KEYS="catalog:secret-key")

    assert line.startswith("LOOKALIKE_API__KEYS: not valid JSON")
    assert "expected a JSON list" in line
    assert "secret-key" not in line


def test_a_whole_group_given_as_json_is_named_as_set(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = lines_for(clean_env, LOOKALIKE_QUEUE='{"batch_size": 0}')

    assert line.startswith("LOOKALIKE_QUEUE: batch_size: ")
    assert "greater than 0" in line


def test_a_list_setting_that_is_not_json(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = lines_for(clean_env, LOOKALIKE_ENABLED_MODELS="dinov2-vits14")

    assert line.startswith("LOOKALIKE_ENABLED_MODELS='dinov2-vits14': not valid JSON")
    assert 'expected a JSON list of text, e.g. ["a", "b"]' in line


def test_read_settings_raises_with_the_lines(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOOKALIKE_THUMBNAIL_SIZE", "5")

    with pytest.raises(InvalidSettings) as raised:
        read_settings()

    (line,) = raised.value.lines
    assert line.startswith("LOOKALIKE_THUMBNAIL_SIZE='5': ")
    assert "expected a whole number >= 16 and <= 1024" in line
    assert str(raised.value) == line


def test_good_settings_are_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOOKALIKE_QUEUE__BATCH_SIZE", "8")

    assert read_settings().queue.batch_size == 8
