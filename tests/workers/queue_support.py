"""A real queue for end-to-end tests: an embedded Valkey server and real worker processes.

Everything runs as it does in production: the broker is the ``EmbeddedRedis`` server, each
worker is a separate ``python -m search_api.cli worker`` process (or the failure-injecting
``tests.workers.flaky_worker``) in its own process group, and events are published with
``search_api.producer.publisher.Publisher``. Tests observe progress through the event statuses in
Redis and read the vector store only while no worker holds it (local mode is single-process).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis
from celery import Celery
from PIL import Image

from ingest.images.blobs import BlobStore
from ingest.images.decode import sha256_hex
from ingest.store.base import VectorStore, point_id
from ingest.store.current import open_store
from schemas.events import (
    DeleteEvent,
    EventState,
    EventStatus,
    UpdatePayloadEvent,
    UploadEvent,
)
from schemas.settings import Settings
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.producer.publisher import Publisher
from tests.ingest.image_samples import encode
from workers.app import configure

REPO = Path(__file__).resolve().parents[2]
# The failure-injecting worker reads the path of its "store is down" marker from here.
STORE_DOWN_MARKER_ENV = "LOOKALIKE_TEST_STORE_DOWN_MARKER"
POLL_SECONDS = 0.05
READY_LINE = " ready."
LOG_TAIL_CHARS = 4000
# A warm shutdown waits for the batch in hand; beyond this the worker is considered hung.
STOP_TIMEOUT = 30.0

AnyEvent = UploadEvent | DeleteEvent | UpdatePayloadEvent


def distinct_png(seed: int, size: int = 64) -> bytes:
    """A small PNG of 4x4 random colour tiles: distinct bytes (and pictures) for each seed."""
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    tile = size // 4
    pixels = np.repeat(np.repeat(tiles, tile, axis=0), tile, axis=1)
    return encode(Image.fromarray(pixels, "RGB"), "PNG")


@dataclass(frozen=True)
class Upload:
    """An upload event with the point id it must produce."""

    event: UploadEvent
    sha256: str

    @property
    def point_id(self) -> str:
        """Point id of (item, image): the same in every model's collection."""
        return point_id(self.event.item_id, self.sha256)


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-LOG_TAIL_CHARS:]


def _pgid_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group (zombies hold no locks)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces): state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


class WorkerProcess:
    """A worker in its own process group (Celery main process plus its pool children)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.argv = list(argv)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # One group for the main process and its children: SIGKILL takes them all.
                start_new_session=True,
            )
        self.pgid = self.popen.pid

    @property
    def running(self) -> bool:
        """Whether the main process is alive."""
        return self.popen.poll() is None

    def log(self) -> str:
        """The end of this worker's output."""
        return _log_tail(self.log_path)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until Celery logs that the worker consumes; fail with its log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if READY_LINE in self.log_path.read_text(errors="replace"):
                    return
            if not self.running:
                raise AssertionError(
                    f"worker exited with code {self.popen.returncode} before it was ready:\n"
                    f"{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")
            time.sleep(POLL_SECONDS)

    def freeze(self) -> None:
        """SIGSTOP the whole group: nothing in it runs, reads a socket or writes to Redis."""
        os.killpg(self.pgid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the whole group."""
        os.killpg(self.pgid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole process group, as the OOM killer or a power cut would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)
        self._wait_group_gone()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to the main process, which stops its children)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.resume()  # a frozen worker would never handle SIGTERM
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"worker did not stop within {STOP_TIMEOUT}s of SIGTERM:\n{self.log()}"
                ) from None
        # Children left behind by a crashed main process still hold the store's lock.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self._wait_group_gone()

    def _wait_group_gone(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while _pgid_alive(self.pgid):
            if time.monotonic() > deadline:
                raise AssertionError(f"processes of worker group {self.pgid} survive SIGKILL")
            time.sleep(POLL_SECONDS)


def stack_env(
    root: Path,
    models_dir: Path,
    *,
    default_model: str,
    enabled_models: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The LOOKALIKE_* variables of a stack (without the broker URL, known once it runs)."""
    env = {
        "LOOKALIKE_DATA_DIR": str(root / "data"),
        "LOOKALIKE_MODELS_DIR": str(models_dir),
        "LOOKALIKE_DEFAULT_MODEL": default_model,
        "LOOKALIKE_SOURCES__FILE_ROOTS": json.dumps([str(root / "files")]),
        "LOOKALIKE_SOURCES__HTTP_HOSTS": "[]",
        # Short, so that messages of a killed worker come back within the test.
        "LOOKALIKE_QUEUE__VISIBILITY_TIMEOUT": "5",
        "LOOKALIKE_QUEUE__FLUSH_INTERVAL": "1.0",
        "LOOKALIKE_QUEUE__RETRY_BACKOFF": "1",
        "LOOKALIKE_QUEUE__RETRY_BACKOFF_MAX": "2",
    }
    if enabled_models:
        env["LOOKALIKE_ENABLED_MODELS"] = json.dumps(list(enabled_models))
    env.update(overrides or {})
    return env


@dataclass
class QueueStack:
    """One isolated deployment: data dir, Valkey server, publisher, and worker processes."""

    root: Path
    env: dict[str, str]
    settings: Settings
    redis_server: EmbeddedRedis
    celery: Celery
    publisher: Publisher
    workers: list[WorkerProcess] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, env: dict[str, str]) -> QueueStack:
        """Start the broker and build settings exactly as the workers will read them."""
        server = EmbeddedRedis(Path(env["LOOKALIKE_DATA_DIR"]))
        url = server.start()
        try:
            env = {**env, "LOOKALIKE_REDIS_URL": url}
            (root / "files").mkdir(parents=True, exist_ok=True)
            # The same variables the workers get, parsed by the same class.
            settings = _settings_from(env)
            # An app of our own: the shared `workers.app.app` caches its connection pool, so
            # reconfiguring it for the next test's broker would keep talking to this one.
            celery = configure(Celery("lookalike-tests", set_as_current=False), settings, url)
            publisher = Publisher.connect(celery, settings.collection_prefix)
        except BaseException:
            server.stop()
            raise
        return cls(root, env, settings, server, celery, publisher)

    # -- workers ------------------------------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        """This process's environment without our settings, plus the stack's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
        env.update(self.env)
        return env

    def start_worker(
        self,
        module: str = "search_api.cli",
        *,
        extra_env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> WorkerProcess:
        """A worker process: ``python -m search_api.cli worker`` unless another module."""
        argv = [sys.executable, "-m", module]
        if module == "search_api.cli":
            argv += ["worker", "--loglevel=info"]
        env = self.child_env()
        env.update(extra_env or {})
        log_path = self.root / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(argv, env, log_path)
        self.workers.append(worker)
        if wait_ready:
            worker.wait_ready()
        return worker

    def stop_workers(self) -> None:
        """Warm-stop every worker still running."""
        for worker in self.workers:
            worker.stop()

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``python -m search_api.cli ARGS`` against this stack; fail on a non-zero exit."""
        env = self.child_env()
        done = subprocess.run(
            [sys.executable, "-m", "search_api.cli", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"lookalike {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
        return done

    # -- events -------------------------------------------------------------------------------

    @property
    def blobs(self) -> BlobStore:
        """The blob store the workers read ``blob://`` URIs from."""
        return BlobStore(self.settings.resolved_blob_dir())

    @property
    def client(self) -> redis.Redis:
        """A redis-py client on the broker (the publisher's status store)."""
        return self.publisher.tracker.client

    def upload(self, item_id: str, data: bytes, metadata: dict[str, Any] | None = None) -> Upload:
        """Put the image in the blob store and build its upload event (not yet published)."""
        event = UploadEvent(
            item_id=item_id, image_uri=self.blobs.put(data), metadata=metadata or {}
        )
        return Upload(event, sha256_hex(data))

    def publish(self, events: Sequence[AnyEvent]) -> list[str]:
        """Publish events through the production publisher; returns their ids."""
        return self.publisher.publish(events)

    def statuses(self, event_ids: Sequence[str]) -> dict[str, EventState | None]:
        """Current status of each event."""
        return dict(zip(event_ids, self.publisher.tracker.statuses(event_ids), strict=True))

    def wait_settled(self, event_ids: Sequence[str], *, timeout: float) -> dict[str, EventState]:
        """Wait until no event is queued (done or failed); fail listing the stuck ones."""
        final: dict[str, EventState] = {}

        def settled() -> bool:
            states = self.statuses(event_ids)
            if any(s is None or s.status is EventStatus.QUEUED for s in states.values()):
                return False
            final.update({k: v for k, v in states.items() if v is not None})
            return True

        self.wait_until(
            settled, timeout=timeout, what=f"{len(event_ids)} events to settle", ids=event_ids
        )
        return final

    def wait_until(
        self,
        condition: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        ids: Sequence[str] = (),
    ) -> float:
        """Poll ``condition`` (tolerating a broker that is down); returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                if condition():
                    return time.monotonic() - started
            except redis.ConnectionError:
                pass  # the broker is restarting: ask again
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.report(ids)}"
                )
            time.sleep(POLL_SECONDS)

    def report(self, event_ids: Sequence[str] = ()) -> str:
        """What the queue looks like now, for failure messages."""
        lines: list[str] = []
        try:
            states = self.statuses(event_ids) if event_ids else {}
            counts = Counter(
                "unknown" if s is None else f"{s.status.value}:{s.reason or '-'}"
                for s in states.values()
            )
            lines.append(f"statuses: {dict(counts)}")
            stuck = [
                (event_id, s)
                for event_id, s in states.items()
                if s is None or s.status is EventStatus.QUEUED
            ]
            for event_id, state in stuck[:15]:
                detail = "no status" if state is None else state.model_dump_json()
                lines.append(f"  stuck {event_id}: {detail}")
            lines.append(
                f"queue depth {self.publisher.queue_depth()}, unacked {self.unacked()}, "
                f"dead letters {self.publisher.tracker.dead_letter_count()}"
            )
        except redis.RedisError as error:
            lines.append(f"(broker unreachable: {error})")
        for index, worker in enumerate(self.workers):
            alive = "running" if worker.running else f"exited {worker.popen.returncode}"
            lines.append(f"--- worker {index} ({alive}) log tail:\n{worker.log()}")
        return "\n".join(lines)

    def unacked(self) -> int:
        """Messages delivered to a worker and not acknowledged yet (kombu's ack emulation)."""
        return int(self.client.hlen("unacked"))

    def unacked_event_ids(self) -> list[str]:
        """Event ids of the unacknowledged messages (kombu keeps each message's raw form)."""
        event_ids = []
        for raw in self.client.hvals("unacked"):
            message = json.loads(raw)[0]
            body = message["body"]
            if message["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]  # Celery message protocol 2: [args, kwargs, embed]
            event = args[0] if args else None
            if isinstance(event, dict) and isinstance(event.get("event_id"), str):
                event_ids.append(event["event_id"])
        return event_ids

    def blocked_fetches(self) -> int:
        """Clients blocked in BRPOP: a worker waiting for messages on an empty queue."""
        return sum(
            1
            for client in self.client.client_list()
            if client.get("cmd") == "brpop" and "b" in str(client.get("flags", ""))
        )

    def freeze_between_fetches(self, worker: WorkerProcess, *, timeout: float = 30.0) -> int:
        """SIGSTOP ``worker`` at a moment it holds a full prefetch window; returns its size.

        kombu fetches with BRPOP and records the message as unacknowledged in a second round
        trip, so a message can be lost while in between (see the resend test). A worker only
        fetches while it holds fewer unacknowledged messages than its prefetch limit, and
        fetches one message at a time: with the limit reached, none is in between.
        """
        prefetch = 2 * self.settings.queue.batch_size  # worker_prefetch_multiplier x 1 process
        deadline = time.monotonic() + timeout
        while True:
            worker.freeze()
            if self.unacked() == prefetch:
                return prefetch
            worker.resume()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker never held a full prefetch window of {prefetch} in {timeout}s\n"
                    f"{self.report()}"
                )
            time.sleep(0.02)

    def publish_count(self) -> int:
        """LPUSH calls the broker has served: kombu publishes with LPUSH (restores use RPUSH)."""
        stats = self.client.info("commandstats")
        entry = stats.get("cmdstat_lpush", {})
        return int(entry.get("calls", 0)) if isinstance(entry, dict) else 0

    # -- store --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def store(self) -> Iterator[VectorStore]:
        """The vector store, opened in this process (local mode: no worker may be running)."""
        running = [w.pgid for w in self.workers if w.running]
        assert not running, f"stop the workers {running} before opening the local store"
        store = open_store(self.settings)
        try:
            yield store
        finally:
            store.close()

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every worker, then stop the broker; safe after any failure."""
        errors: list[str] = []
        for worker in self.workers:
            try:
                worker.kill()
            except Exception as error:
                errors.append(f"worker {worker.pgid}: {error}")
        with contextlib.suppress(Exception):
            self.publisher.tracker.client.close()
        with contextlib.suppress(Exception):
            self.celery.close()
        self.redis_server.stop(timeout=5)
        if errors:
            raise AssertionError("; ".join(errors))


def _settings_from(env: Mapping[str, str]) -> Settings:
    """Settings parsed from exactly these variables (the test process's own are ignored)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LOOKALIKE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)
