"""Every Redis key Lookalike writes, in one place: the layout under the deployment's prefix.

The prefix is ``LOOKALIKE_COLLECTION_PREFIX`` (default ``lookalike``), so two deployments can
share one Redis. Besides these, the queue itself is the list ``lookalike`` (``schemas.queue``)
and kombu keeps delivered, unacknowledged messages in its hash ``unacked``.

========================================  ====================================================
key                                       holds
========================================  ====================================================
``<p>:event:<event id>``                  an event's status (JSON, expires after a week)
``<p>:pending``                           hash: event id -> published event not yet settled
``<p>:pending:recovery-lock``             the lost-message sweep's lock (one sweeper a turn)
``<p>:deadletters``                       hash: event id -> dead letter (event, reason, time)
``<p>:duplicates:job:<id>``               a duplicate job (JSON)
``<p>:duplicates:job:<id>:groups``        list of its groups (JSON), in page order
``<p>:duplicates:jobs:<model>``           sorted set: the model's job ids by creation time
``<p>:duplicates:hidden:<model>``         set of "a|b" point pairs marked "not a duplicate"
``<p>:reindex:<id>``                      a re-index job (JSON)
``<p>:reindex:<id>:failed``               set of its point ids that failed
``<p>:reindex:jobs``                      sorted set: re-index job ids by creation time
``<p>:admin:batch:<id>``                  an admin upload's events and refusals (JSON, a week)
========================================  ====================================================

Concurrent writes, one rule for every store: a record that more than one process may change
(a job: its task, the API that created it, a resume from the command line) is changed only
through ``ingest.state.records.change_record``, a compare-and-set (WATCH/MULTI) retried on
conflict, so no writer's update is lost. A new record and its index entry are written in
one MULTI. Records only one writer ever sets whole (event statuses, dead letters, batches)
are plain SETs: the last write is the truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class Keys:
    """The key names of one deployment (``prefix``)."""

    prefix: str = "lookalike"

    def event_status(self, event_id: str) -> str:
        """An event's status."""
        return f"{self.prefix}:event:{event_id}"

    @property
    def event_status_pattern(self) -> str:
        """A SCAN pattern matching every event status (the prefix's glob characters escaped)."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + ":event:*"

    @property
    def pending(self) -> str:
        """Published events not yet settled."""
        return f"{self.prefix}:pending"

    @property
    def recovery_lock(self) -> str:
        """Held by the worker sweeping for lost messages."""
        return f"{self.pending}:recovery-lock"

    @property
    def dead_letters(self) -> str:
        """Events that failed, with their reasons."""
        return f"{self.prefix}:deadletters"

    def duplicate_job(self, job_id: str) -> str:
        """A duplicate job's record."""
        return f"{self.prefix}:duplicates:job:{job_id}"

    def duplicate_groups(self, job_id: str) -> str:
        """A duplicate job's groups."""
        return f"{self.duplicate_job(job_id)}:groups"

    def duplicate_jobs(self, model_id: str) -> str:
        """A model's duplicate jobs by creation time."""
        return f"{self.prefix}:duplicates:jobs:{model_id}"

    def duplicate_dismissals(self, model_id: str) -> str:
        """A model's pairs marked "not a duplicate"."""
        return f"{self.prefix}:duplicates:hidden:{model_id}"

    def reindex_job(self, job_id: str) -> str:
        """A re-index job's record."""
        return f"{self.prefix}:reindex:{job_id}"

    def reindex_failed(self, job_id: str) -> str:
        """A re-index job's failed point ids."""
        return f"{self.reindex_job(job_id)}:failed"

    @property
    def reindex_jobs(self) -> str:
        """Re-index jobs by creation time."""
        return f"{self.prefix}:reindex:jobs"

    def admin_batch(self, batch_id: str) -> str:
        """An admin upload's events."""
        return f"{self.prefix}:admin:batch:{batch_id}"
