"""Re-sending events whose message was lost between Redis and a worker.

kombu's Redis transport takes a message with BRPOP and records it as unacknowledged in a
second round trip (celery/kombu#305): a worker killed, or a Redis restarted, between the two
loses that message. Publishers therefore remember every event until a worker settles it
(``EventTracker.remember``); this sweep re-sends the ones that are in neither place a live
message can be — the queue and the unacknowledged hash — once the queue has drained. A
re-sent event that was not lost after all is harmless: point ids are idempotent.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any

import redis
from celery import Celery

from ingest.state.events import EventTracker, PendingEvent
from schemas.queue import QUEUE

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, key]


def _event_id_of(message: dict[str, Any]) -> str | None:
    """The event id in a Celery protocol-2 message body (JSON, base64-encoded)."""
    try:
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        event_id = args[0].get("event_id") if args and isinstance(args[0], dict) else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return str(event_id) if event_id is not None else None


def held_event_ids(client: redis.Redis) -> set[str]:
    """Events whose message a worker holds (delivered, not yet acknowledged)."""
    held = set()
    for raw in client.hvals(UNACKED_KEY):
        try:
            message = json.loads(raw)[0]
        except (TypeError, ValueError, IndexError):
            continue
        event_id = _event_id_of(message)
        if event_id is not None:
            held.add(event_id)
    return held


def recover_lost_events(celery: Celery, tracker: EventTracker, *, min_age: float) -> list[str]:
    """Re-send pending events that no queue or worker holds; returns their ids."""
    client = tracker.client
    if client.llen(QUEUE):
        return []  # messages still waiting: a missing one may simply not be visible yet
    held = held_event_ids(client)
    now = time.time()
    lost = [
        pending
        for pending in tracker.pending()
        if now - pending.published_at >= min_age and pending.event_id not in held
    ]
    _resend(celery, tracker, lost)
    return [pending.event_id for pending in lost]


def queued_event_ids(client: redis.Redis) -> set[str]:
    """Events whose message waits in the ingestion queue."""
    queued = set()
    for raw in client.lrange(QUEUE, 0, -1):
        try:
            event_id = _event_id_of(json.loads(raw))
        except (TypeError, ValueError):
            continue
        if event_id is not None:
            queued.add(event_id)
    return queued


def restore_orphans(celery: Celery, tracker: EventTracker) -> tuple[int, list[str]]:
    """Before the only consumer starts: what a dead consumer held goes back in the queue.

    The one-process stack is the only consumer of its embedded Redis, so every message in the
    unacknowledged hash when it starts was held by a process that died (SIGKILL, power loss).
    kombu would give them back only after the visibility timeout, hiding accepted uploads
    for that long; here they go back at once, to the front of the queue, through kombu's own
    restore (the same one its timeout uses). Pending events in neither place were lost
    between Redis and the dead worker, and are re-sent. Returns (restored, re-sent ids).
    Never call this while another consumer may be running: it would deliver its batch twice.
    """
    client = tracker.client
    tags = client.hkeys(UNACKED_KEY)
    # The broker named now: an app configured again keeps its first write URL cached.
    with celery.connection_for_write(url=celery.conf.broker_url) as connection:
        qos = connection.default_channel.qos  # type: ignore[attr-defined]  # Redis channels have one
        for tag in tags:
            qos.restore_by_tag(tag, leftmost=True)
    queued = queued_event_ids(client)
    lost = [pending for pending in tracker.pending() if pending.event_id not in queued]
    _resend(celery, tracker, lost)
    if tags or lost:
        log.warning(
            "after an unclean stop: %d unacknowledged messages back in the queue, "
            "%d lost events re-sent",
            len(tags),
            len(lost),
        )
    return len(tags), [pending.event_id for pending in lost]


def _resend(celery: Celery, tracker: EventTracker, lost: list[PendingEvent]) -> None:
    for pending in lost:
        log.warning("re-sending event %s: its message was lost", pending.event_id)
        # Remembered again first, as every publisher does: its age restarts for the next sweep.
        tracker.remember(pending.task, [pending.event])
        celery.send_task(pending.task, args=[pending.event], queue=QUEUE)


def start_recovery(
    celery: Celery, tracker: EventTracker, *, interval: float, min_age: float
) -> threading.Event:
    """Sweep in a daemon thread every ``interval`` seconds; set the returned event to stop.

    Several workers may run it: a short Redis lock lets one of them sweep per interval.
    """
    stop = threading.Event()
    lock_key = tracker.keys.recovery_lock

    def sweep_forever() -> None:
        while not stop.wait(interval):
            try:
                if tracker.client.set(lock_key, "1", nx=True, ex=max(1, int(interval))):
                    recover_lost_events(celery, tracker, min_age=min_age)
            except redis.RedisError as error:  # Redis restarting: try again next time
                log.info("recovery sweep skipped: %s", error)

    threading.Thread(target=sweep_forever, name="lookalike-recovery", daemon=True).start()
    return stop
