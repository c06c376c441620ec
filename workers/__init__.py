"""Celery app and tasks: thin wrappers around ``ingest`` (see the workers issue)."""
