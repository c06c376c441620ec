"""Production WSGI server: gunicorn, embedded (``gunicorn.app.base.BaseApplication``)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from schemas.settings import Settings
from search_api.web.app import create_app

DEFAULT_BIND = "127.0.0.1:8000"
# Clustering and duplicate queries over large collections take tens of seconds.
WORKER_TIMEOUT = 120


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse several processes on the embedded store, which one process only may open."""
    if settings.qdrant_url is None and workers > 1:
        raise ValueError(
            "the embedded store can be opened by one process only: run a Qdrant server and "
            "set LOOKALIKE_QDRANT_URL to use --workers > 1"
        )


class ApiServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """Gunicorn running ``create_app(settings)`` in each worker process (loaded after fork)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply our options; gunicorn's own config files and env are not read."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """The WSGI app of this worker: its own store connection and Redis pool."""
        return create_app(self.settings)


def server_options(bind: str, workers: int, threads: int) -> dict[str, Any]:
    """Gunicorn settings: threaded workers (queries wait on Qdrant and Redis), access log."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": WORKER_TIMEOUT,
        "accesslog": "-",
        "preload_app": False,  # each worker opens its own store after the fork
    }


def serve(
    settings: Settings, *, bind: str = DEFAULT_BIND, workers: int = 1, threads: int = 4
) -> None:
    """Run gunicorn until stopped (SIGINT/SIGTERM)."""
    check_workers(settings, workers)
    ApiServer(settings, server_options(bind, workers, threads)).run()
