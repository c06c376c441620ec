"""Fixtures of the end-to-end tests: `lookalike up` processes on a fresh machine's environment."""

from tests.e2e.up_support import start_up, up_env

__all__ = ["start_up", "up_env"]
