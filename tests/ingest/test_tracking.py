"""Event statuses and dead letters, against a real Redis server."""

from __future__ import annotations

import redis

from ingest.state.events import STATUS_TTL, EventTracker
from schemas.events import DeadLetter, EventState, EventStatus
from search_api.cli.embedded.redis_server import EmbeddedRedis


def _tracker(server: EmbeddedRedis) -> EventTracker:
    return EventTracker(redis.Redis.from_url(server.url), prefix="t")


def test_statuses_round_trip_in_order_with_a_ttl(redis_server: EmbeddedRedis) -> None:
    tracker = _tracker(redis_server)
    tracker.record(
        EventState(event_id=f"e{i}", item_id=f"item-{i}", status=EventStatus.QUEUED)
        for i in range(3)
    )
    tracker.mark("e1", EventStatus.FAILED, item_id="item-1", reason="truncated", message="cut")
    states = tracker.statuses(["e0", "e1", "missing", "e2"])
    assert [s.status if s else None for s in states] == [
        EventStatus.QUEUED,
        EventStatus.FAILED,
        None,
        EventStatus.QUEUED,
    ]
    failed = tracker.status("e1")
    assert failed is not None
    assert (failed.reason, failed.message, failed.item_id) == ("truncated", "cut", "item-1")
    ttl = tracker.client.ttl("t:event:e0")
    assert 0 < int(ttl) <= STATUS_TTL.total_seconds()


def test_statuses_of_many_events_span_several_mget_pages(redis_server: EmbeddedRedis) -> None:
    tracker = _tracker(redis_server)
    ids = [f"e{i}" for i in range(2500)]
    tracker.record(EventState(event_id=i, status=EventStatus.DONE) for i in ids)
    states = tracker.statuses(ids)
    assert len(states) == 2500
    assert all(s is not None and s.status is EventStatus.DONE for s in states)


def test_dead_letters_list_take_and_purge(redis_server: EmbeddedRedis) -> None:
    tracker = _tracker(redis_server)
    for i, reason in enumerate(["truncated", "not_found", "forbidden_host"]):
        letter = DeadLetter(event={"item_id": f"i{i}"}, task="t", reason=reason, message="m")
        tracker.add_dead_letter(letter, f"e{i}")
    assert tracker.dead_letter_count() == 3
    listed = tracker.dead_letters()
    assert [event_id for event_id, _ in listed] == ["e0", "e1", "e2"]  # oldest first
    taken = tracker.take_dead_letter("e1")
    assert taken is not None
    assert taken.reason == "not_found"
    assert tracker.take_dead_letter("e1") is None
    assert tracker.purge_dead_letters() == 2
    assert tracker.dead_letters() == []
