"""The recovery sweep: lost messages are re-sent, live ones never (real Redis, no worker)."""

from __future__ import annotations

import json

import redis

from schemas.events import EventStatus, UploadEvent
from schemas.queue import QUEUE
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.producer.publisher import Publisher
from workers.app import app, configure
from workers.recovery import UNACKED_KEY, held_event_ids, recover_lost_events


def _publisher(server: EmbeddedRedis, settings: Settings) -> Publisher:
    return Publisher.connect(configure(app, settings, server.url), settings.collection_prefix)


def _event(item: str) -> UploadEvent:
    return UploadEvent(item_id=item, image_uri="blob://" + "a" * 64)


def test_only_events_in_no_queue_and_no_worker_are_resent(
    redis_server: EmbeddedRedis, settings: Settings
) -> None:
    publisher = _publisher(redis_server, settings)
    client: redis.Redis = publisher.tracker.client
    lost, held, settled = _event("lost"), _event("held"), _event("settled")
    publisher.publish([lost, held, settled])
    # While messages wait in the queue nothing can be judged lost.
    assert recover_lost_events(publisher.celery, publisher.tracker, min_age=0) == []
    messages = [json.loads(m) for m in client.lrange(QUEUE, 0, -1)]
    client.delete(QUEUE)  # every message fetched ...
    by_event = {m["headers"]["argsrepr"]: m for m in messages}
    held_message = next(m for key, m in by_event.items() if held.event_id in key)
    client.hset(UNACKED_KEY, "tag-1", json.dumps([held_message, "", QUEUE]))  # ... one recorded
    publisher.tracker.mark(settled.event_id, EventStatus.DONE)  # ... one finished
    assert held_event_ids(client) == {held.event_id}
    assert recover_lost_events(publisher.celery, publisher.tracker, min_age=3600) == []  # young
    assert recover_lost_events(publisher.celery, publisher.tracker, min_age=0) == [lost.event_id]
    resent = [json.loads(m) for m in client.lrange(QUEUE, 0, -1)]
    assert len(resent) == 1
    assert lost.event_id in resent[0]["headers"]["argsrepr"]
    assert {p.event_id for p in publisher.tracker.pending()} == {lost.event_id, held.event_id}
