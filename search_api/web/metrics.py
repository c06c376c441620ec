"""Prometheus metrics of one app: request latency, query embedding time, queue gauges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from search_api.web.services import Services

EXTENSION = "lookalike_metrics"
# Query embedding of one image on a CPU: tens of milliseconds to a second or two.
EMBED_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """Collectors in a registry of their own, so that several apps (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "lookalike_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.embed_seconds = Histogram(
            "lookalike_embed_duration_seconds",
            "Time to decode and embed one query image.",
            ["model"],
            buckets=EMBED_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "lookalike_queue_depth",
            "Messages waiting in the ingestion queue.",
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "lookalike_dead_letters", "Dead letters waiting.", registry=self.registry
        )
        self.queue_up = Gauge(
            "lookalike_queue_up",
            "1 if Redis answered the last scrape, else 0.",
            registry=self.registry,
        )

    def install(self, app: Flask) -> None:
        """Time every request of the app."""
        app.extensions[EXTENSION] = self
        app.before_request(_start_timer)
        app.after_request(self._observe)

    def _observe(self, response: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            # The route template, not the path: item ids must not become label values.
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            self.request_seconds.labels(rule, request.method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    @contextmanager
    def time_embedding(self, model_id: str) -> Iterator[None]:
        """Observe the time of the enclosed query embedding."""
        started = time.perf_counter()
        yield
        self.embed_seconds.labels(model_id).observe(time.perf_counter() - started)

    def render(self, services: Services) -> Response:
        """The text exposition, with queue gauges read from Redis now."""
        try:
            self.queue_depth.set(services.publisher.queue_depth())
            self.dead_letters.set(services.tracker.dead_letter_count())
            self.queue_up.set(1)
        except redis.RedisError:
            self.queue_up.set(0)
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def current_metrics() -> ApiMetrics:
    """The metrics of the app handling the current request."""
    metrics = current_app.extensions[EXTENSION]
    assert isinstance(metrics, ApiMetrics)  # noqa: S101 (set by create_app)
    return metrics
