"""The recovery sweep: lost messages are re-sent, live ones never (real Redis, no worker)."""

from __future__ import annotations

import json

import redis
from celery import Celery

from schemas.events import EventStatus, UploadEvent
from schemas.queue import QUEUE, celery_config
from schemas.settings import QueueSettings, Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.producer.publisher import Publisher
from workers.app import configure
from workers.recovery import UNACKED_KEY, held_event_ids, recover_lost_events, restore_orphans


def _publisher(server: EmbeddedRedis, settings: Settings) -> Publisher:
    # A new app per test: an app keeps its connection pools to the first broker it used.
    celery = configure(Celery("lookalike-recovery-test"), settings, server.url)
    return Publisher.connect(celery, settings.collection_prefix)


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


def test_restore_orphans_gives_back_what_a_dead_consumer_held_and_resends_the_lost(
    redis_server: EmbeddedRedis, settings: Settings
) -> None:
    publisher = _publisher(redis_server, settings)
    client: redis.Redis = publisher.tracker.client
    waiting, held, lost = _event("waiting"), _event("held"), _event("lost")
    publisher.publish([held, lost, waiting])
    messages = {m["headers"]["argsrepr"]: m for m in map(json.loads, client.lrange(QUEUE, 0, -1))}
    client.delete(QUEUE)
    by_item = {key.split("'item_id': '")[1].split("'")[0]: m for key, m in messages.items()}
    client.rpush(QUEUE, json.dumps(by_item["waiting"]))  # still waits in the queue
    # Held by the dead consumer, as kombu records it: the message and its index entry.
    client.hset(UNACKED_KEY, "tag-held", json.dumps([by_item["held"], "", QUEUE]))
    client.zadd("unacked_index", {"tag-held": 1.0})
    # "lost" was taken from the queue and never recorded: only the ledger knows it.

    restored, resent = restore_orphans(publisher.celery, publisher.tracker)

    assert (restored, resent) == (1, [lost.event_id])
    assert client.hlen(UNACKED_KEY) == 0
    assert client.zcard("unacked_index") == 0
    queued = [m["headers"]["argsrepr"] for m in map(json.loads, client.lrange(QUEUE, 0, -1))]
    assert len(queued) == 3
    assert all(any(event.event_id in q for q in queued) for event in (waiting, held, lost))
    # Nothing was there to restore the second time.
    assert restore_orphans(publisher.celery, publisher.tracker) == (0, [])


def test_the_visibility_timeout_follows_the_hard_time_limit_unless_set() -> None:
    derived = QueueSettings(time_limit=100)
    assert derived.resolved_visibility_timeout == 160
    config = celery_config(Settings(queue=derived), "redis://localhost/0")
    assert config["broker_transport_options"]["visibility_timeout"] == 160
    assert QueueSettings(visibility_timeout=900).resolved_visibility_timeout == 900
