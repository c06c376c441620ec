"""The ``/api/v1`` blueprints, the health endpoints and the OpenAPI document."""

from __future__ import annotations

from flask import Flask

from search_api.api import (
    admin,
    blobs,
    duplicates,
    health,
    ingest,
    reindex,
    search,
    thumbnails,
)
from search_api.api.openapi import spec


def register_api(app: Flask) -> None:
    """Add every blueprint and the documentation pages to the app."""
    for blueprint in (
        health.bp,
        search.bp,
        thumbnails.bp,
        duplicates.bp,
        ingest.bp,
        blobs.bp,
        admin.bp,
        reindex.bp,
    ):
        app.register_blueprint(blueprint)
    spec.register(app)
