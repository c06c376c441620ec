"""Per-event status and dead letters, kept in Redis next to the queue.

Status answers "what happened to my upload?" by event id; dead letters keep events that
cannot succeed as they are (bad image, forbidden URI, exhausted retries) with their reason
until someone retries or purges them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis

from ingest.state.keys import Keys
from ingest.state.records import text
from schemas.events import DeadLetter, EventState, EventStatus

STATUS_TTL = timedelta(days=7)


_SETTLED = (EventStatus.DONE, EventStatus.FAILED)


@dataclass(frozen=True)
class PendingEvent:
    """A published event not yet done or failed, kept so that a lost message can be re-sent."""

    event_id: str
    task: str
    event: dict[str, Any]
    published_at: float


class EventTracker:
    """Event statuses (with a TTL) and the dead-letter hash in one Redis database."""

    def __init__(self, client: redis.Redis, *, prefix: str = "lookalike") -> None:
        self.client = client
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.dead_letter_key = self.keys.dead_letters
        self.pending_key = self.keys.pending

    def _status_key(self, event_id: str) -> str:
        return self.keys.event_status(event_id)

    def record(self, states: Iterable[EventState]) -> None:
        """Write several statuses in one round trip; settled events stop being pending."""
        with self.client.pipeline(transaction=False) as pipe:
            for state in states:
                pipe.set(self._status_key(state.event_id), state.model_dump_json(), ex=STATUS_TTL)
                if state.status in _SETTLED:
                    pipe.hdel(self.pending_key, state.event_id)
            pipe.execute()

    def remember(self, task: str, events: Iterable[dict[str, Any]]) -> None:
        """Keep published events until they settle (see ``workers.recovery``)."""
        now = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            for event in events:
                record = json.dumps({"task": task, "event": event, "at": now})
                pipe.hset(self.pending_key, str(event["event_id"]), record)
            pipe.execute()

    def pending(self) -> list[PendingEvent]:
        """Every published event that is neither done nor failed yet."""
        found = []
        for key, raw in self.client.hgetall(self.pending_key).items():
            record = json.loads(raw)
            found.append(PendingEvent(text(key), record["task"], record["event"], record["at"]))
        return found

    def mark_received(self, event_id: str, *, item_id: str | None = None) -> bool:
        """Write ``received`` only if the event has no status yet; True if it was written."""
        state = EventState(event_id=event_id, item_id=item_id, status=EventStatus.RECEIVED)
        written = self.client.set(
            self._status_key(event_id), state.model_dump_json(), ex=STATUS_TTL, nx=True
        )
        return bool(written)

    def mark(
        self,
        event_id: str,
        status: EventStatus,
        *,
        item_id: str | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Write one event's status."""
        self.record(
            [
                EventState(
                    event_id=event_id,
                    item_id=item_id,
                    status=status,
                    reason=reason,
                    message=message,
                )
            ]
        )

    def status(self, event_id: str) -> EventState | None:
        """An event's status, or None if unknown (or expired)."""
        raw = self.client.get(self._status_key(event_id))
        return EventState.model_validate_json(raw) if raw else None

    def statuses(self, event_ids: Sequence[str]) -> list[EventState | None]:
        """Statuses of many events, in order, with one MGET per thousand ids."""
        found: list[EventState | None] = []
        for start in range(0, len(event_ids), 1000):
            keys = [self._status_key(e) for e in event_ids[start : start + 1000]]
            raws = self.client.mget(keys)
            found += [EventState.model_validate_json(r) if r else None for r in raws]
        return found

    def add_dead_letter(self, letter: DeadLetter, event_id: str) -> None:
        """Keep an event that cannot succeed as it is; a later failure of it replaces this one."""
        self.client.hset(self.dead_letter_key, event_id, letter.model_dump_json())

    def dead_letters(self) -> list[tuple[str, DeadLetter]]:
        """Every dead letter as (event id, letter), oldest first."""
        raw = self.client.hgetall(self.dead_letter_key)
        letters = [(text(key), DeadLetter.model_validate_json(value)) for key, value in raw.items()]
        return sorted(letters, key=lambda pair: pair[1].failed_at)

    def take_dead_letter(self, event_id: str) -> DeadLetter | None:
        """Remove and return one dead letter (to re-queue it); None if there is none."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(self.dead_letter_key, event_id)
            pipe.hdel(self.dead_letter_key, event_id)
            raw, _ = pipe.execute()
        return DeadLetter.model_validate_json(raw) if raw else None

    def purge_dead_letters(self) -> int:
        """Drop every dead letter; returns how many there were."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hlen(self.dead_letter_key)
            pipe.delete(self.dead_letter_key)
            count, _ = pipe.execute()
        return int(count)

    def have_dead_letters(self, event_ids: Sequence[str]) -> list[bool]:
        """Whether each of these events has a dead letter, in order, in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hexists(self.dead_letter_key, event_id)
            return [bool(found) for found in pipe.execute()]

    def dead_letter_count(self) -> int:
        """How many dead letters are waiting."""
        return int(self.client.hlen(self.dead_letter_key))
