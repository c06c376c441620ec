"""Pydantic models shared by every Lookalike package: settings, model specs, results."""
