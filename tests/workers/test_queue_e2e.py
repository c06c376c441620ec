"""The ingestion queue end to end: a real Redis server and real Celery worker processes.

Each test gets its own data dir, embedded Valkey server and ``lookalike worker`` processes
(see ``queue_support.py``); nothing runs eagerly and nothing is faked except where a test
injects a failure (``flaky_worker.py``). Progress is watched through the event statuses the
workers write to Redis. The store is qdrant-client's local mode, which one process opens at a
time, so stored points are checked after the workers have stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from ingest.images.decode import sha256_hex
from ingest.store.base import VectorStore
from schemas.events import (
    DeleteEvent,
    EventState,
    EventStatus,
    UpdatePayloadEvent,
    UploadEvent,
)
from schemas.points import PayloadFilter, StoredPoint
from schemas.queue import INGEST_TASK, QUEUE
from tests.ingest.image_samples import encode, picture, png_claiming_size, truncated
from tests.support import TEST_MODEL_ID
from tests.workers.conftest import TWIN_MODEL_ID, MakeStack
from tests.workers.queue_support import (
    STORE_DOWN_MARKER_ENV,
    QueueStack,
    Upload,
    WorkerProcess,
    distinct_png,
)

# Generous: a 2-core CI box may run other suites at the same time.
SETTLE_TIMEOUT = 120.0
BOTH_MODELS = (TEST_MODEL_ID, TWIN_MODEL_ID)
# Visibility timeout (5 s) + restore sweep + the rest of the queue, with room for a slow box.
REDELIVERY_TIMEOUT = 60.0


def _done(stack: QueueStack, event_ids: Sequence[str]) -> int:
    states = stack.statuses(event_ids).values()
    return sum(1 for s in states if s is not None and s.status is EventStatus.DONE)


def _assert_all_done(states: Mapping[str, EventState]) -> None:
    not_done = {i: s for i, s in states.items() if s.status is not EventStatus.DONE}
    shown = "\n".join(f"  {i}: {s.model_dump_json()}" for i, s in list(not_done.items())[:15])
    assert not not_done, f"{len(not_done)} of {len(states)} events did not end done:\n{shown}"


def _assert_stored_exactly(store: VectorStore, model_id: str, uploads: Sequence[Upload]) -> None:
    """The collection holds one point per distinct (item, image) and nothing else."""
    expected = {u.point_id: u.event.item_id for u in uploads}
    found = store.retrieve(model_id, sorted(expected))
    assert {p.id for p in found} == set(expected), (
        f"{model_id}: {len(set(expected) - {p.id for p in found})} expected points missing"
    )
    assert all(p.item_id == expected[p.id] for p in found)
    assert store.count(model_id) == len(expected), f"{model_id}: extra points stored"


def _by_id(points: Sequence[StoredPoint]) -> dict[str, StoredPoint]:
    return {p.id: p for p in points}


# -- 1. throughput and exactly-once storage in every enabled model --------------------------


def test_500_uploads_are_stored_once_each_in_every_enabled_model(make_stack: MakeStack) -> None:
    stack = make_stack(two_models=True)
    uploads = [
        stack.upload(f"item-{i:04d}", distinct_png(i), {"brand": f"brand-{i % 7}"})
        for i in range(500)
    ]
    assert len({u.point_id for u in uploads}) == 500
    stack.start_worker()

    event_ids = stack.publish([u.event for u in uploads])
    _assert_all_done(stack.wait_settled(event_ids, timeout=SETTLE_TIMEOUT))
    assert stack.publisher.tracker.dead_letter_count() == 0
    stack.stop_workers()

    with stack.store() as store:
        for model_id in BOTH_MODELS:
            _assert_stored_exactly(store, model_id, uploads)
        sample = [u.point_id for u in uploads[::50]]
        first = store.retrieve(TEST_MODEL_ID, sample, with_vectors=True)
        second = store.retrieve(TWIN_MODEL_ID, sample, with_vectors=True)
    # The twin is the same ONNX file under another id: each collection got the real embedding
    # of the same image, not a placeholder.
    for a, b in zip(first, second, strict=True):
        assert a.vector is not None
        assert b.vector is not None
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-5)
        assert a.payload["brand"] == b.payload["brand"]


# -- 2. a worker killed mid-batch ---------------------------------------------------------


def test_worker_sigkilled_mid_batch_is_redelivered_and_stores_each_image_once(
    make_stack: MakeStack,
) -> None:
    stack = make_stack()
    uploads = [stack.upload(f"item-{i:04d}", distinct_png(i)) for i in range(360)]
    # A second image for some items, and the same (item, image) uploaded again under new
    # event ids: the store must hold each distinct pair once, however often it is delivered.
    uploads += [stack.upload(f"item-{i:04d}", distinct_png(10_000 + i)) for i in range(60)]
    again = [
        Upload(UploadEvent(item_id=u.event.item_id, image_uri=u.event.image_uri), u.sha256)
        for u in uploads[100:130]
    ]
    events = [u.event for u in uploads + again]
    worker = stack.start_worker()
    event_ids = stack.publish(events)

    stack.wait_until(
        lambda: _done(stack, event_ids) >= len(event_ids) // 3,
        timeout=SETTLE_TIMEOUT,
        what="a third of the events to be done",
        ids=event_ids,
    )
    # Killed between two fetches: a message caught inside a fetch comes back only through the
    # recovery sweep (kombu's gap, see the resend test below), not what this test is about.
    held = stack.freeze_between_fetches(worker)
    in_hand = stack.unacked_event_ids()
    done_at_kill = _done(stack, event_ids)
    worker.kill()

    # Killed in the middle: messages delivered to it and not acknowledged (its batch and the
    # next one) can only be finished by a redelivery.
    assert done_at_kill < len(event_ids)
    assert stack.unacked() == held == len(in_hand)
    held_states = stack.statuses(in_hand).values()
    assert any(s is not None and s.status is EventStatus.QUEUED for s in held_states), (
        "every message the killed worker held was already done: it was not mid-batch"
    )

    killed_at = time.monotonic()
    stack.start_worker()
    # The dead worker's messages come back once their visibility timeout has passed, not
    # whenever kombu's default sweep (every 100 s) gets round to them.
    _assert_all_done(stack.wait_settled(event_ids, timeout=REDELIVERY_TIMEOUT))
    print(f"all done {time.monotonic() - killed_at:.1f}s after the kill")
    stack.wait_until(
        lambda: (stack.publisher.queue_depth(), stack.unacked()) == (0, 0),
        timeout=30,
        what="every message to be acknowledged",
    )
    assert stack.publisher.tracker.dead_letter_count() == 0
    stack.stop_workers()

    with stack.store() as store:
        _assert_stored_exactly(store, TEST_MODEL_ID, uploads)


def test_a_message_fetched_by_a_worker_killed_before_recording_it_is_resent(
    make_stack: MakeStack,
) -> None:
    stack = make_stack()
    worker = stack.start_worker()
    try:
        event_id = _hand_a_message_to_a_frozen_worker(stack, worker)
    except AssertionError as error:
        pytest.fail(f"setup failed: {error}")
    worker.kill()
    # kombu's Redis transport pops a message with BRPOP and records it as unacknowledged in a
    # second round trip (celery/kombu#305): killed in between, the message is gone from Redis.
    assert stack.publisher.queue_depth() + stack.unacked() == 0
    # The event is still pending, so a worker's recovery sweep sends it again.
    stack.start_worker(
        extra_env={
            "LOOKALIKE_QUEUE__RECOVERY_INTERVAL": "1",
            "LOOKALIKE_QUEUE__RECOVERY_MIN_AGE": "2",
        }
    )
    _assert_all_done(stack.wait_settled([event_id], timeout=60))
    assert stack.publisher.tracker.pending() == []
    stack.stop_workers()
    with stack.store() as store:
        assert store.count(TEST_MODEL_ID) == 1


def _hand_a_message_to_a_frozen_worker(stack: QueueStack, worker: WorkerProcess) -> str:
    """Publish one upload that Redis pops for a frozen worker; returns its event id."""
    for attempt in range(5):
        # Freeze the worker while it waits in BRPOP on the empty queue ...
        stack.wait_until(
            lambda: stack.blocked_fetches() > 0, timeout=10, what="the worker to wait in BRPOP"
        )
        worker.freeze()
        if stack.blocked_fetches() == 0:  # its 1 s BRPOP timed out just now
            worker.resume()
            continue
        upload = stack.upload(f"item-{attempt}", distinct_png(attempt))
        [event_id] = stack.publish([upload.event])
        # ... so that Redis hands the new message to the frozen process at once.
        time.sleep(0.3)
        if stack.publisher.queue_depth() == 0:
            # Popped, and the frozen process cannot have recorded it as unacknowledged.
            assert stack.unacked() == 0
            return event_id
        worker.resume()  # the BRPOP expired first: let it through and try again
        stack.wait_settled([event_id], timeout=30)
    raise AssertionError("could not freeze the worker inside a BRPOP")


# -- 3. Redis restarts under load ---------------------------------------------------------


def test_redis_restart_loses_no_queued_event_and_the_worker_reconnects(
    make_stack: MakeStack,
) -> None:
    stack = make_stack()
    uploads = [stack.upload(f"item-{i:04d}", distinct_png(i)) for i in range(400)]
    worker = stack.start_worker()
    event_ids = stack.publish([u.event for u in uploads])
    stack.wait_until(
        lambda: _done(stack, event_ids) >= 100,
        timeout=SETTLE_TIMEOUT,
        what="100 events to be done",
        ids=event_ids,
    )
    # Shut Redis down between two fetches (see the resend test above for why), with the
    # worker mid-batch and most events still waiting in the queue.
    stack.freeze_between_fetches(worker)
    queued_at_stop = stack.publisher.queue_depth()
    assert queued_at_stop > 100
    url = stack.env["LOOKALIKE_REDIS_URL"]
    stack.redis_server.stop()
    worker.resume()  # the worker now runs into a dead broker: writes fail, consumer retries
    # Longer than redis-py's default retries (10, at most ~5 s in all) ride out.
    time.sleep(6.0)
    assert stack.redis_server.start() == url, "a restart must hand out the same URL"

    _assert_all_done(stack.wait_settled(event_ids, timeout=SETTLE_TIMEOUT))
    log = worker.log_path.read_text(errors="replace")
    assert worker.running, f"the worker died instead of reconnecting:\n{worker.log()}"
    assert log.count("Connected to redis://") >= 2, "the worker never reconnected"
    # Status writes waited for Redis instead of failing the batch in hand (a failed batch is
    # acknowledged all the same, leaving its events "queued" for ever).
    errors = [line for line in log.splitlines() if "ERROR/ForkPoolWorker" in line]
    assert not errors, "a batch failed during the restart:\n" + "\n".join(errors)
    assert stack.publisher.tracker.dead_letter_count() == 0
    stack.stop_workers()

    with stack.store() as store:
        _assert_stored_exactly(store, TEST_MODEL_ID, uploads)


# -- 4. the store unreachable for a while -------------------------------------------------


def test_store_outage_is_retried_until_it_ends_and_nothing_is_dead_lettered(
    make_stack: MakeStack,
) -> None:
    # Enough retries for a few seconds of outage even with zero-length jittered delays.
    stack = make_stack(overrides={"LOOKALIKE_QUEUE__MAX_RETRIES": "20"})
    marker = stack.root / "store-down"
    stack.start_worker("tests.workers.flaky_worker", extra_env={STORE_DOWN_MARKER_ENV: str(marker)})
    early = [stack.upload(f"early-{i}", distinct_png(i), {"brand": "acme"}) for i in range(4)]
    _assert_all_done(stack.wait_settled(stack.publish([u.event for u in early]), timeout=60))

    marker.touch()
    outage_started = time.monotonic()
    during = [stack.upload(f"item-{i:03d}", distinct_png(100 + i)) for i in range(30)]
    upload_ids = stack.publish([u.event for u in during])
    other_ids = stack.publish(
        [
            UpdatePayloadEvent(item_id="early-0", metadata={"brand": "globex"}),
            DeleteEvent(item_id="early-1"),
        ]
    )
    everything = upload_ids + other_ids

    def all_retrying() -> bool:
        states = stack.statuses(upload_ids).values()
        return all(
            s is not None and s.status is EventStatus.QUEUED and s.reason == "store_unavailable"
            for s in states
        )

    stack.wait_until(all_retrying, timeout=60, what="uploads to be retrying", ids=upload_ids)
    retrying = stack.statuses(upload_ids)
    assert all("retry" in (s.message or "") for s in retrying.values() if s)
    time.sleep(max(0.0, 4.0 - (time.monotonic() - outage_started)))
    during_outage = stack.statuses(everything).values()
    assert all(s is not None and s.status is EventStatus.QUEUED for s in during_outage)

    marker.unlink()
    _assert_all_done(stack.wait_settled(everything, timeout=SETTLE_TIMEOUT))
    assert stack.publisher.tracker.dead_letters() == []
    stack.stop_workers()

    with stack.store() as store:
        _assert_stored_exactly(store, TEST_MODEL_ID, early[2:] + during + early[:1])
        [updated] = store.retrieve(TEST_MODEL_ID, [early[0].point_id])
        assert updated.payload["brand"] == "globex"


# -- 5. hostile input --------------------------------------------------------------------


def test_bad_uploads_become_dead_letters_with_their_reason_and_are_never_retried(
    make_stack: MakeStack,
) -> None:
    stack = make_stack()
    files = stack.root / "files"
    empty = files / "empty.jpg"
    empty.write_bytes(b"")
    missing = files / "arrives-later.png"
    outside = stack.root / "outside-the-roots.png"
    outside.write_bytes(distinct_png(7))
    bad: list[tuple[str, UploadEvent]] = [
        ("truncated", stack.upload("bad-truncated", truncated(encode(picture(), "JPEG"))).event),
        ("empty", UploadEvent(item_id="bad-empty", image_uri=empty.as_uri())),
        ("decompression_bomb", stack.upload("bad-bomb", png_claiming_size(100_000, 100_000)).event),
        ("not_an_image", stack.upload("bad-text", b"a shopping list, not a picture\n").event),
        ("not_found", UploadEvent(item_id="bad-missing-file", image_uri=missing.as_uri())),
        (
            "not_found",
            UploadEvent(item_id="bad-missing-blob", image_uri=f"blob://{sha256_hex(b'never')}"),
        ),
        ("forbidden_path", UploadEvent(item_id="bad-outside", image_uri=outside.as_uri())),
        (
            "forbidden_host",
            UploadEvent(item_id="bad-host", image_uri="http://example.invalid/x.jpg"),
        ),
    ]
    good = [stack.upload(f"good-{i}", distinct_png(i)) for i in range(12)]
    later = [stack.upload(f"later-{i}", distinct_png(50 + i)) for i in range(4)]
    stack.start_worker()
    published_before = stack.publish_count()

    # Good and bad interleaved, so that they share batches.
    mixed: list[UploadEvent] = []
    for index, upload in enumerate(good):
        mixed.append(upload.event)
        if index < len(bad):
            mixed.append(bad[index][1])
    event_ids = stack.publish(mixed)
    # Producers in other languages can send anything: no item_id, or not even an object.
    stack.celery.send_task(
        INGEST_TASK,
        args=[{"event_id": "malformed-1", "image_uri": good[0].event.image_uri}],
        queue=QUEUE,
    )
    not_an_object = stack.celery.send_task(INGEST_TASK, args=["an upload, honestly"], queue=QUEUE)
    later_ids = stack.publish([u.event for u in later])  # the worker keeps going after them
    malformed = ["malformed-1", str(not_an_object.id)]
    published = len(mixed) + len(malformed) + len(later)

    states = stack.wait_settled(event_ids + malformed + later_ids, timeout=SETTLE_TIMEOUT)
    letters = dict(stack.publisher.tracker.dead_letters())
    for reason, event in bad:
        state = states[event.event_id]
        assert (state.status, state.reason) == (EventStatus.FAILED, reason), event.item_id
        letter = letters[event.event_id]
        assert (letter.reason, letter.task) == (reason, INGEST_TASK), event.item_id
        assert letter.event["item_id"] == event.item_id
        assert letter.event["image_uri"] == event.image_uri
    for event_id in malformed:
        assert (states[event_id].status, states[event_id].reason) == (
            EventStatus.FAILED,
            "bad_event",
        )
        assert letters[event_id].reason == "bad_event"
    assert letters["malformed-1"].event["event_id"] == "malformed-1"
    assert len(letters) == len(bad) + len(malformed)
    _assert_all_done({u.event.event_id: states[u.event.event_id] for u in good + later})
    # Nothing was re-published: the broker saw exactly our messages (kombu publishes with
    # LPUSH), and once the last batch is acknowledged none is left waiting with a countdown.
    stack.wait_until(
        lambda: (stack.publisher.queue_depth(), stack.unacked()) == (0, 0),
        timeout=30,
        what="the queue to drain and every message to be acknowledged",
    )
    assert stack.publish_count() - published_before == published

    # Fix one and re-queue it from the CLI, as an operator would.
    missing.write_bytes(distinct_png(99))
    [fixed] = [e for reason, e in bad if e.item_id == "bad-missing-file"]
    retried = stack.cli("deadletters", "retry", fixed.event_id)
    assert "re-queued 1 event(s)" in retried.stdout
    assert stack.wait_settled([fixed.event_id], timeout=60)[fixed.event_id].status is (
        EventStatus.DONE
    )
    listed = json.loads(stack.cli("deadletters", "list", "--json").stdout)
    assert {entry["event_id"] for entry in listed} == set(letters) - {fixed.event_id}
    assert {(entry["event_id"], entry["reason"]) for entry in listed} == {
        (event_id, letter.reason)
        for event_id, letter in letters.items()
        if event_id != fixed.event_id
    }

    purged = stack.cli("deadletters", "purge", "--yes")
    assert f"purged {len(letters) - 1} dead letter(s)" in purged.stdout
    assert json.loads(stack.cli("deadletters", "list", "--json").stdout) == []
    stack.stop_workers()

    with stack.store() as store:
        fixed_upload = Upload(fixed, sha256_hex(distinct_png(99)))
        _assert_stored_exactly(store, TEST_MODEL_ID, [*good, *later, fixed_upload])


# -- 6. delete and update-payload events --------------------------------------------------


def test_update_and_delete_events_apply_to_every_model_collection(make_stack: MakeStack) -> None:
    stack = make_stack(two_models=True)
    metadata = {"brand": "acme", "colour": "red"}
    uploads = [
        stack.upload("keep", distinct_png(1), metadata),
        stack.upload("change", distinct_png(2), metadata),
        stack.upload("change", distinct_png(3), metadata),
        stack.upload("gone", distinct_png(4), metadata),
        stack.upload("gone", distinct_png(5), metadata),
    ]
    all_ids = [u.point_id for u in uploads]
    stack.start_worker()
    _assert_all_done(stack.wait_settled(stack.publish([u.event for u in uploads]), timeout=60))
    stack.stop_workers()
    with stack.store() as store:
        before = {m: _by_id(store.retrieve(m, all_ids, with_vectors=True)) for m in BOTH_MODELS}
    assert all(len(points) == len(uploads) for points in before.values())

    stack.start_worker()
    changes: list[UpdatePayloadEvent | DeleteEvent] = [
        UpdatePayloadEvent(item_id="change", metadata={"brand": "globex", "season": "winter"}),
        DeleteEvent(item_id="gone"),
    ]
    _assert_all_done(stack.wait_settled(stack.publish(changes), timeout=60))
    stack.stop_workers()

    with stack.store() as store:
        for model_id in BOTH_MODELS:
            after = _by_id(store.retrieve(model_id, all_ids, with_vectors=True))
            assert store.count(model_id) == 3
            assert store.count(model_id, filter=PayloadFilter.from_pairs({"item_id": "gone"})) == 0
            assert {p.item_id for p in after.values()} == {"keep", "change"}
            for pid, point in after.items():
                old = before[model_id][pid]
                # Same vector: the payload changed in place, nothing was embedded again.
                assert point.vector == old.vector
                assert point.payload["ingested_at"] == old.payload["ingested_at"]
                if point.item_id == "change":
                    assert point.payload == {
                        **old.payload,
                        "brand": "globex",
                        "season": "winter",
                    }
                else:
                    assert point.payload == old.payload


# -- 7. latency of a lone upload ----------------------------------------------------------


def test_a_lone_upload_is_indexed_within_seconds(make_stack: MakeStack) -> None:
    stack = make_stack()
    stack.start_worker()
    # The first event loads the model and opens the store; latency is about the steady state.
    warm_up = stack.upload("warm-up", distinct_png(1))
    _assert_all_done(stack.wait_settled(stack.publish([warm_up.event]), timeout=60))

    lone = stack.upload("lone", distinct_png(2))
    [event_id] = stack.publish([lone.event])
    latency = stack.wait_until(
        lambda: _done(stack, [event_id]) == 1, timeout=30, what="the lone upload", ids=[event_id]
    )
    flush = stack.settings.queue.flush_interval
    print(f"lone upload indexed {latency:.2f}s after publishing (flush interval {flush}s)")
    # A partial batch waits up to one flush interval; 10 s leaves room for a loaded machine.
    assert latency < 10.0
