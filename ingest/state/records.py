"""The one way a shared record in Redis is changed: compare-and-set, retried on conflict."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis
from pydantic import BaseModel

from ingest.errors import LookalikeError

# How many times an update is retried when another writer got there first.
CAS_ATTEMPTS = 50

Record = TypeVar("Record", bound=BaseModel)


def change_record(
    client: redis.Redis,
    key: str,
    kind: type[Record],
    edit: Callable[[Record], Record | None],
    *,
    missing: Callable[[], LookalikeError],
) -> Record | None:
    """Replace the JSON record at ``key`` by ``edit(record)`` atomically (WATCH/MULTI).

    ``edit`` may run more than once (after a conflict) and returns None to write nothing.
    Raises ``missing()`` when there is no record.
    """
    with client.pipeline(transaction=True) as pipe:
        for _ in range(CAS_ATTEMPTS):
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if not raw:
                    raise missing()
                edited = edit(kind.model_validate_json(raw))
                if edited is None:
                    pipe.unwatch()
                    return None
                pipe.multi()
                pipe.set(key, edited.model_dump_json())
                pipe.execute()
                return edited
            except redis.WatchError:
                continue  # another writer got in between: read again
    raise redis.RedisError(f"{key} kept changing under {CAS_ATTEMPTS} tries")


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value if isinstance(value, str) else value.decode()
