"""A producer that is not ours: raw Redis commands writing only what the README documents.

No Python publisher, no Celery client: the message envelope, the status key and the pending
ledger are written by hand with LPUSH / HSET, as a Node.js or Go service would. Real Redis,
real worker processes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from schemas.events import EventStatus
from schemas.queue import INGEST_TASK, QUEUE
from tests.workers.conftest import MakeStack
from tests.workers.queue_support import QueueStack, distinct_png

SETTLE_TIMEOUT = 120.0
PREFIX = "lookalike"


def _envelope(task_id: str, event: dict[str, Any]) -> str:
    """The README's raw message: a Celery protocol-2 envelope around ``[[event], {}, {…}]``."""
    body = [[event], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": INGEST_TASK,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def _status(stack: QueueStack, event_id: str) -> dict[str, Any] | None:
    raw = stack.client.get(f"{PREFIX}:event:{event_id}")
    return json.loads(raw) if raw else None


def _upload_event(stack: QueueStack, item_id: str, seed: int) -> dict[str, Any]:
    # No event_id: the README says the event's id is then the message's task id.
    return {"kind": "upload", "item_id": item_id, "image_uri": stack.blobs.put(distinct_png(seed))}


def test_an_event_without_an_id_is_tracked_by_its_task_id_and_received_at_once(
    make_stack: MakeStack,
) -> None:
    # A batch that waits to fill: the event sits in the worker, received but not yet done.
    stack = make_stack(
        overrides={"LOOKALIKE_QUEUE__BATCH_SIZE": "50", "LOOKALIKE_QUEUE__FLUSH_INTERVAL": "8"}
    )
    stack.start_worker()
    task_id = str(uuid.uuid4())
    stack.client.lpush(QUEUE, _envelope(task_id, _upload_event(stack, "foreign-1", 1)))

    stack.wait_until(lambda: _status(stack, task_id) is not None, timeout=5, what="a status")
    state = _status(stack, task_id)
    assert state is not None
    assert (state["status"], state["item_id"]) == (EventStatus.RECEIVED, "foreign-1")
    stack.wait_until(
        lambda: (_status(stack, task_id) or {}).get("status") == EventStatus.DONE,
        timeout=SETTLE_TIMEOUT,
        what="the foreign event done under its task id",
    )


def test_a_lost_message_of_a_foreign_producer_comes_back_through_the_documented_ledger(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(
        overrides={
            "LOOKALIKE_QUEUE__RECOVERY_INTERVAL": "1",
            "LOOKALIKE_QUEUE__RECOVERY_MIN_AGE": "1",
        }
    )
    stack.start_worker()
    event_id = "foreign-lost-1"
    event = {**_upload_event(stack, "foreign-2", 2), "event_id": event_id}
    # What the README asks of a producer, before it pushes: a queued status and a ledger entry.
    stack.client.set(
        f"{PREFIX}:event:{event_id}",
        json.dumps({"event_id": event_id, "item_id": "foreign-2", "status": "queued"}),
    )
    record = {"task": INGEST_TASK, "event": event, "at": time.time()}
    stack.client.hset(f"{PREFIX}:pending", event_id, json.dumps(record))
    # ... and then the message is lost on its way (a worker killed between BRPOP and its
    # record of the message), so it is in no queue and in no worker's hands.

    stack.wait_until(
        lambda: (_status(stack, event_id) or {}).get("status") == EventStatus.DONE,
        timeout=SETTLE_TIMEOUT,
        what="the lost foreign event re-sent from the ledger and done",
    )
    assert stack.client.hget(f"{PREFIX}:pending", event_id) is None
