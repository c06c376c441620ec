"""A Celery worker running in a thread of the current process (the one-process embedded stack)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from celery.platforms import EX_OK
from celery.worker import state as worker_state

from schemas.queue import QUEUE

log = logging.getLogger(__name__)

# A warm stop waits for the batch in hand (a few seconds of embedding at most).
STOP_TIMEOUT = 60.0
# Connecting to the broker and starting the consumer; Redis is local, so this is quick.
READY_TIMEOUT = 60.0


class EmbeddedWorker:
    """Consumes the ingestion queue in a background thread; ``stop`` is a warm shutdown.

    It uses Celery's own ``WorkController`` (what ``celery worker`` runs, without the
    command-line layer that installs signal handlers, which only the main thread may do) with
    the solo pool: tasks run in the consumer's thread, in this process, which owns the embedded
    store that the API also uses.
    """

    def __init__(self, celery: Celery, *, hostname: str = "lookalike-embedded@%h") -> None:
        self._ready = threading.Event()
        self._controller: Any = celery.WorkController(
            ready_callback=lambda consumer: self._ready.set(),
            pool_cls="solo",
            concurrency=1,
            queues=[QUEUE],
            hostname=hostname,
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            loglevel=logging.INFO,
        )
        self._thread = threading.Thread(
            target=self._run, name="lookalike-embedded-worker", daemon=True
        )
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            self._controller.start()
        except BaseException as error:  # reported by `alive`/`stop`, the thread just ends
            self._failure = error
            log.exception("the embedded worker stopped with an error")

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start consuming in the background; returns once the consumer is ready.

        Waiting matters for stopping too: Celery ignores a stop that arrives while its
        bootsteps are still starting, and the worker would then run on.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if not self._thread.is_alive():
                raise RuntimeError(f"the embedded worker did not start: {self._failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the embedded worker was not ready within {timeout:.0f} s")

    @property
    def alive(self) -> bool:
        """Whether the worker thread still runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Finish the batch in hand, then stop consuming (unacknowledged messages stay queued)."""
        # What Celery's own warm-shutdown signal handler does: set the flag its event loop
        # checks on every turn, so that the worker stops itself in its own thread. Calling
        # the controller's stop() from here instead would close the broker connections under
        # a consumer blocked reading them, and hang.
        worker_state.should_stop = EX_OK  # type: ignore[assignment]  # celery-types: None
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the embedded worker did not stop within %.0f s", timeout)
