"""Fixtures of the queue tests: an isolated Lookalike deployment with real Redis and workers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import pytest

from ingest.models.registry import ModelRegistry
from tests.support import TEST_MODEL_DIR, TEST_MODEL_ID
from tests.workers.queue_support import QueueStack, stack_env

# The test model registered a second time under another id: a second enabled model whose
# collection must receive every image too (same ONNX file, so identical vectors).
TWIN_MODEL_ID = "tiny-random-twin"


class MakeStack(Protocol):
    """Builds a running stack (broker up, no worker yet)."""

    def __call__(
        self, *, two_models: bool = False, overrides: Mapping[str, str] | None = None
    ) -> QueueStack: ...


@pytest.fixture
def make_stack(tmp_path: Path, models_dir: Path) -> Iterator[MakeStack]:
    """Factory of stacks; every worker and server they started is gone after the test."""
    stacks: list[QueueStack] = []

    def make(*, two_models: bool = False, overrides: Mapping[str, str] | None = None) -> QueueStack:
        enabled: tuple[str, ...] = ()
        if two_models:
            registry = ModelRegistry(models_dir)
            if TWIN_MODEL_ID not in {m.spec.id for m in registry.installed()}:
                registry.register(
                    TEST_MODEL_DIR / "model.onnx",
                    TWIN_MODEL_ID,
                    preprocessing=registry.manifest(TEST_MODEL_ID).spec.preprocessing,
                    random_weights=True,
                )
            enabled = (TEST_MODEL_ID, TWIN_MODEL_ID)
        root = tmp_path / f"stack-{len(stacks)}"
        env = stack_env(
            root,
            models_dir,
            default_model=TEST_MODEL_ID,
            enabled_models=enabled,
            overrides=overrides,
        )
        stack = QueueStack.start(root, env)
        stacks.append(stack)
        return stack

    yield make
    errors = []
    for stack in reversed(stacks):
        try:
            stack.close()
        except Exception as error:
            errors.append(str(error))
    assert not errors, errors
