"""A Celery worker running in a thread of the current process (the one-process embedded stack)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery

from workers.app import QUEUE

log = logging.getLogger(__name__)

# A warm stop waits for the batch in hand (a few seconds of embedding at most).
STOP_TIMEOUT = 60.0


class EmbeddedWorker:
    """Consumes the ingestion queue in a background thread; ``stop`` is a warm shutdown.

    It uses Celery's own ``WorkController`` (what ``celery worker`` runs, without the
    command-line layer that installs signal handlers, which only the main thread may do) with
    the solo pool: tasks run in the consumer's thread, in this process, where the local-mode
    store that the API also uses is open.
    """

    def __init__(self, celery: Celery, *, hostname: str = "lookalike-embedded@%h") -> None:
        self._controller: Any = celery.WorkController(
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

    def start(self) -> None:
        """Start consuming in the background."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the worker thread still runs."""
        return self._thread.is_alive()

    @property
    def failure(self) -> BaseException | None:
        """What stopped the worker, if it stopped on its own."""
        return self._failure

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Finish the batch in hand, then stop consuming (unacknowledged messages stay queued)."""
        self._controller.stop(in_sighandler=False, exitcode=0)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the embedded worker did not stop within %.0f s", timeout)
