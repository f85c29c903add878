"""Sync jobs that kept failing, recorded against their connection (BR-14).

The host moves a mail or calendar job that failed every delivery to ``mail-sync-poison`` or
``calendar-sync-poison``. No queue trigger reads those queues: the host decodes a trigger's
message as base64 before any code runs, so a job some producer sent as plain JSON would fail
there too and end in a ``-poison-poison`` queue nobody watches. Instead a timer
(:meth:`PoisonedJobs.sweep`) receives their text as stored and reads each message as well as it
can: the agreed base64 encoding, else plain JSON. When the message names a tenant and a user by
valid ids, the connection of the queue's kind moves to ``error`` with ``job_poisoned`` (whatever
else in the job is malformed); otherwise a warning with the queue and message id is logged. The
message is then deleted. Nothing here raises for a message: one whose connection cannot be
written now stays hidden for :data:`HOLD_S` and is read again by a later sweep.

Known limitations: a message whose connection write keeps failing (storage down for good) is
read again every sweep until its queue's retention (7 days) drops it, logged each time.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import CALENDAR_SYNC_POISON_QUEUE, MAIL_SYNC_POISON_QUEUE, decode_job
from shared.errors import InvalidJobError, SyncError
from shared.sync.connections import CALENDAR, MAIL
from shared.sync.jobs import is_id

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.adapters.queues import JobQueue, RawMessage
    from shared.sync.connectionstore import ConnectionStore

logger = logging.getLogger(__name__)

KIND_OF_QUEUE: Mapping[str, str] = {
    MAIL_SYNC_POISON_QUEUE: MAIL,
    CALENDAR_SYNC_POISON_QUEUE: CALENDAR,
}
"""The sync poison queues a sweep reads, and the kind of connection each one's jobs name."""
BATCH = 32
"""Messages received at once: the most Storage Queues gives in one request."""
MAX_BATCHES = 10
"""Batches one sweep takes per queue, so a sweep ends well within the function timeout."""
HOLD_S = 60
"""How long a received message stays hidden; one not deleted by then is read again later."""


def read_job(text: str) -> dict[str, Any] | None:
    """Read a queue message's text as a job: base64 JSON as agreed, else plain JSON; or None."""
    try:
        agreed: str | None = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        agreed = None
    for candidate in (agreed, text):
        if candidate is None:
            continue
        try:
            return decode_job(candidate)
        except InvalidJobError:
            continue
    return None


class PoisonedJobs:
    """Sweeps the sync poison queues, recording each job against its connection."""

    def __init__(self, connections: ConnectionStore, queue: JobQueue) -> None:
        self._connections = connections
        self._queue = queue

    def sweep(self) -> dict[str, int]:
        """Settle the messages waiting in every sync poison queue; return counts by outcome.

        Raises:
            TransientError: when a queue cannot be read; the next sweep tries again.
        """
        counts = {"recorded": 0, "unreadable": 0, "left": 0}
        for queue, kind in KIND_OF_QUEUE.items():
            for _ in range(MAX_BATCHES):
                messages = self._queue.receive_raw(queue, max_messages=BATCH, hold_s=HOLD_S)
                for message in messages:
                    counts[self._settle(queue, kind, message)] += 1
                if len(messages) < BATCH:
                    break
        if any(counts.values()):
            logger.info("sync poison queues swept", extra=counts)
        return counts

    def _settle(self, queue: str, kind: str, message: RawMessage) -> str:
        """Record one message against its connection and delete it; return the outcome."""
        ids = {"queue": queue, "message_id": message.message_id}
        job = read_job(message.text) or {}
        tenant, user = job.get("tenant"), job.get("user")
        try:
            if is_id(tenant) and is_id(user):
                marked = self._connections.record_poisoned(str(tenant), str(user), kind)
                outcome = "recorded"
                extra = {**ids, "tenant": tenant, "user": user, "marked": marked}
                logger.warning("poisoned sync job recorded", extra=extra)
            else:
                outcome = "unreadable"
                logger.warning("poisoned message names no connection; dropped", extra=ids)
            self._queue.delete(queue, message)
        except SyncError as error:
            extra = {**ids, "error_type": type(error).__name__, "retry_in_s": HOLD_S}
            logger.warning(
                "poisoned message not settled; a later sweep reads it again", extra=extra
            )
            return "left"
        return outcome
