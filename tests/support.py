"""Constants shared by the tests: where the committed random-weight test model lives."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TEST_MODEL_ID = "dinov2-vits14-tiny-random"
TEST_MODEL_DIR = FIXTURES / "models" / TEST_MODEL_ID
