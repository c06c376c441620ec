"""Images ingested per second over the last minutes, from the event statuses in Redis.

Every event's status (kept a week) records when it became ``done``: the admin page reads
them (SCAN + MGET, bounded by ``MAX_STATUSES``) and counts the done ones per minute. Deletes
and metadata updates are events too and count alongside uploads; they are rare next to
uploads. The answer is cached a few seconds so that several open pages do not each rescan.

Why a SCAN and not Prometheus counters: a counter lives in the process that increments it
(a worker, or one of its prefork children), and the page is served by the API process, which
cannot read it; only a Prometheus server scraping every worker process could add them up.
The statuses are the one record every worker writes where the API can read it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import redis

from ingest.state.keys import Keys

WINDOW_MINUTES = 15
MAX_STATUSES = 20_000
SCAN_BATCH = 1000
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Throughput:
    """Done events per minute, the current minute last."""

    per_minute: tuple[int, ...]
    statuses_read: int
    truncated: bool  # more statuses exist than were read: the counts are a lower bound

    def per_second(self, minutes: int) -> float:
        """Mean images/s over the last ``minutes`` minutes."""
        minutes = max(1, min(minutes, len(self.per_minute)))
        return sum(self.per_minute[-minutes:]) / (minutes * 60.0)

    @property
    def peak(self) -> int:
        """The busiest minute's count (for scaling the chart)."""
        return max(self.per_minute, default=0)


def _timestamp(raw: bytes | str) -> tuple[str, float] | None:
    try:
        state = json.loads(raw)
        stamp = datetime.fromisoformat(state["updated_at"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return None
    return str(state.get("status")), stamp


def measure(
    client: redis.Redis,
    prefix: str,
    *,
    now: float | None = None,
    window: int = WINDOW_MINUTES,
    max_statuses: int = MAX_STATUSES,
) -> Throughput:
    """Count done events per minute over the last ``window`` minutes."""
    now = time.time() if now is None else now
    counts = [0] * window
    pattern = Keys(prefix).event_status_pattern
    read = 0
    truncated = False
    batch: list[bytes | str] = []

    def flush() -> None:
        for raw in client.mget(batch):
            parsed = _timestamp(raw) if raw else None
            if parsed is None or parsed[0] != "done":
                continue
            age = int((now - parsed[1]) // 60)
            if 0 <= age < window:
                counts[window - 1 - age] += 1
        batch.clear()

    for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
        if read >= max_statuses:
            truncated = True
            break
        batch.append(key)
        read += 1
        if len(batch) >= SCAN_BATCH:
            flush()
    if batch:
        flush()
    return Throughput(tuple(counts), read, truncated)


_cache: dict[str, tuple[float, Throughput]] = {}
_lock = threading.Lock()


def cached_measure(client: redis.Redis, prefix: str) -> Throughput:
    """``measure``, reused for a few seconds."""
    now = time.monotonic()
    cache_key = f"{id(client)}:{prefix}"
    with _lock:
        hit = _cache.get(cache_key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    found = measure(client, prefix)
    with _lock:
        _cache[cache_key] = (now, found)
    return found
