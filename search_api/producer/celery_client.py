"""A Celery app that only sends: the API's and the command line's connection to the queue."""

from __future__ import annotations

from celery import Celery

from schemas.queue import celery_config
from schemas.settings import Settings


def producer_celery(
    settings: Settings, broker_url: str, *, name: str = "lookalike-producer"
) -> Celery:
    """A Celery app of our own on the broker (not the workers' ``workers.app.app``)."""
    celery = Celery(name, set_as_current=False)
    celery.conf.update(celery_config(settings, broker_url))
    return celery
