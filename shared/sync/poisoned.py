"""Jobs that kept failing, recorded where their owner sees them (BR-14), whatever their encoding.

The host moves a job that failed every delivery to ``<queue>-poison``. No queue trigger reads
those queues: the host decodes a trigger's message as base64 before any code runs, so a job some
producer sent as plain JSON would fail there too and end in a ``-poison-poison`` queue nobody
watches. Instead a timer (:meth:`PoisonedJobs.sweep`) receives each poison queue's text as stored
and reads every message as well as it can: the agreed base64 encoding, else plain JSON. The
queue's :data:`PoisonHandler` then records it: a mail or calendar job moves the connection it
names by valid tenant and user ids to ``error`` with ``job_poisoned`` (whatever else in the job
is malformed, :func:`connection_handler`); a fan-out page, a purge or an outbox email is
recorded by its own service. A message no handler can place is logged as a warning with the
queue and message id only. Either way it is then deleted. Nothing here raises for a message:
one whose record cannot be written now stays hidden for :data:`HOLD_S` and a later sweep reads
it again.

Known limitations: a message whose record keeps failing (storage down for good) is read again
every sweep until its queue's retention (7 days) drops it, logged each time.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import decode_job
from shared.errors import InvalidJobError, SyncError
from shared.power.purge import parse_message
from shared.sync.jobs import is_id

if TYPE_CHECKING:
    from shared.adapters.queues import JobQueue, RawMessage
    from shared.power.purge import PurgeJobs
    from shared.sending.worker import OutboxWorker
    from shared.sync.connectionstore import ConnectionStore
    from shared.sync.planner import SyncPlanner

logger = logging.getLogger(__name__)

PoisonHandler = Callable[[Mapping[str, Any], str], bool]
"""Records one poisoned job (read from its message) by message id; False when it names nothing.

A handler raises ``InvalidJobError`` or returns False for a job it cannot place, and raises
another ``SyncError`` when its record cannot be written now."""
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


def connection_handler(connections: ConnectionStore, kind: str) -> PoisonHandler:
    """Return the handler of a sync poison queue: it marks the connection the job names."""

    def record(job: Mapping[str, Any], message_id: str) -> bool:
        tenant, user = job.get("tenant"), job.get("user")
        if not (is_id(tenant) and is_id(user)):
            return False
        marked = connections.record_poisoned(str(tenant), str(user), kind)
        extra = {"message_id": message_id, "tenant": tenant, "user": user, "marked": marked}
        logger.warning("poisoned sync job recorded", extra={"kind": kind, **extra})
        return True

    return record


def fanout_handler(planner: SyncPlanner) -> PoisonHandler:
    """Return the handler of ``sync-fanout-poison``: a warning and audit entries per page."""

    def record(job: Mapping[str, Any], message_id: str) -> bool:
        planner.record_poisoned(job, message_id=message_id)
        return True

    return record


def purge_handler(purges: PurgeJobs) -> PoisonHandler:
    """Return the handler of ``purge-poison``: the purge it names is marked ``failed``."""

    def record(job: Mapping[str, Any], message_id: str) -> bool:
        parse_message(job)
        purges.fail(job)
        return True

    return record


def outbox_handler(worker: OutboxWorker) -> PoisonHandler:
    """Return the handler of ``outbox-poison``: the email is marked ``failed``, its draft gone."""

    def record(job: Mapping[str, Any], message_id: str) -> bool:
        worker.fail(job)
        return True

    return record


class PoisonedJobs:
    """Sweeps the poison queues, giving each message to its queue's handler."""

    def __init__(self, handlers: Mapping[str, PoisonHandler], queue: JobQueue) -> None:
        self._handlers = handlers
        self._queue = queue

    def sweep(self) -> dict[str, int]:
        """Settle the messages waiting in every poison queue; return counts by outcome.

        Raises:
            TransientError: when a queue cannot be read; the next sweep tries again.
        """
        counts = {"recorded": 0, "unreadable": 0, "left": 0}
        for queue, handler in self._handlers.items():
            for _ in range(MAX_BATCHES):
                messages = self._queue.receive_raw(queue, max_messages=BATCH, hold_s=HOLD_S)
                for message in messages:
                    counts[self._settle(queue, handler, message)] += 1
                if len(messages) < BATCH:
                    break
        if any(counts.values()):
            logger.info("poison queues swept", extra=counts)
        return counts

    def _settle(self, queue: str, handler: PoisonHandler, message: RawMessage) -> str:
        """Record one message and delete it; return the outcome."""
        ids = {"queue": queue, "message_id": message.message_id}
        job = read_job(message.text)
        try:
            outcome = "recorded" if job is not None and _placed(handler, job, ids) else "unreadable"
            if outcome == "unreadable":
                logger.warning("poisoned message names nothing to record; dropped", extra=ids)
            self._queue.delete(queue, message)
        except SyncError as error:
            extra = {**ids, "error_type": type(error).__name__, "retry_in_s": HOLD_S}
            logger.warning(
                "poisoned message not settled; a later sweep reads it again", extra=extra
            )
            return "left"
        return outcome


def _placed(handler: PoisonHandler, job: Mapping[str, Any], ids: Mapping[str, str]) -> bool:
    """Give a job to its handler; False when the handler finds it names nothing."""
    try:
        return handler(job, ids["message_id"])
    except InvalidJobError:
        return False
