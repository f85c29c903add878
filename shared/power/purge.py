"""Purge jobs: take everything synced from one user's mailbox or calendar out of the product.

A purge runs as a queued job so that a mailbox of any size finishes: the HTTP call records the
job and answers 202 with its status URL, and the worker releases the connection's items in
bounded batches, re-queueing itself after :data:`BATCHES_PER_RUN` batches. The worker holds the
connection's sync lease while it works (:meth:`MailboxGate.hold_connection`), so no sync job of
that mailbox stores anything meanwhile; a purge that finds a sync running tries again
:data:`BUSY_RETRY_S` later, and the sync jobs after it drop what the mailbox received before the
purge was asked for. A sync that got the connection first may have stored mail received after
the request, so the job releases only items older than the connection's purge watermark (its
latest request): it walks the items in key order and saves the last key walked with its counts,
so items it keeps never stall the walk. A watermark moved by a later request starts the walk
again. Each batch is released in an order that survives a kill anywhere (see
:meth:`shared.sync.emaillinks.EmailLinks.release_batch`): the item rows the worker walks go
last, so a redelivered job finds what is left and finishes it. A job
that keeps failing lands in ``purge-poison``, whose sweep marks it ``failed``.

Jobs live in ``purgejobs``, in the tenant's partition: one row per job, and one pointer row per
user and kind naming the job that is queued or running. The job row is written before the
pointer, which is written conditionally, so of racing starts one wins and every other answers
the winner's job: starting twice, or six times at once, is safe.

Known limitations: counts are saved after each batch, so a batch interrupted by a crash is not
counted though its items are gone. A queued job whose message was lost (the process died
between recording it and sending it) is sent again when the user starts a purge once more.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.queues import PURGE_QUEUE
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.audit.log import Action, Outcome
from shared.errors import ConflictError, InvalidJobError, NotFoundError
from shared.sync.connections import MAIL
from shared.sync.jobs import instant
from shared.sync.leases import MailboxGate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.audit.log import AuditLog

logger = logging.getLogger(__name__)

JOBS = "purgejobs"
BATCH_SIZE = 100
BATCHES_PER_RUN = 20
"""Batches one delivery works through before it re-queues itself: well inside host.json's
``functionTimeout`` (10 minutes), which is also how long the host hides a message while its
function runs, so no delivery outlives its hold on the message. (``visibilityTimeout`` is the
wait before a failed delivery is retried, not this hold.)"""
BUSY_RETRY_S = 10
"""How long a purge that found its connection syncing waits before it tries again."""
STALE_AFTER = timedelta(minutes=15)
"""A queued job untouched this long is sent again when its purge is asked for once more."""
_POINTER = "~active|"


class PurgeState(StrEnum):
    """Where a purge job stands."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


OPEN_STATES = frozenset({PurgeState.QUEUED, PurgeState.RUNNING})
COUNTS = ("removed", "keptShared")
"""The counts every purge reports, zero when it found nothing of that kind."""


class Releaser(Protocol):
    """What a purge works through: one connection's stored items, walked in key order."""

    def release_batch(
        self,
        *,
        tenant_id: str,
        user_id: str,
        connection: str,
        size: int,
        before: datetime,
        after: str = "",
    ) -> tuple[dict[str, int], str | None]:
        """Walk up to ``size`` items past key ``after``, releasing those older than ``before``.

        Returns counts by outcome and the last key walked, or None when none was left.
        """
        ...


@dataclass(frozen=True, slots=True)
class PurgeJob:
    """One purge as stored and as the API shows it."""

    tenant_id: str
    job_id: str
    user_id: str
    kind: str
    state: str
    requested_by: str
    requested_at: str
    updated_at: str
    finished_at: str | None
    counts: Mapping[str, int]
    walked_to: str = ""
    """The last item key the job walked, so a later delivery goes on past it."""
    watermark: str = ""
    """The purge watermark the walk so far used; a newer one starts the walk again."""

    def as_json(self) -> dict[str, Any]:
        """Return the job's status as the API answers it."""
        return {
            "id": self.job_id,
            "userId": self.user_id,
            "kind": self.kind,
            "state": self.state,
            "requestedBy": self.requested_by,
            "requestedAt": self.requested_at,
            "updatedAt": self.updated_at,
            "finishedAt": self.finished_at,
            "counts": dict(self.counts),
        }


class PurgeJobs:
    """Records purge jobs, starts each at most once at a time, and runs them from the queue."""

    def __init__(
        self,
        tables: TableEntityStore,
        queue: JobQueue,
        releasers: Mapping[str, Releaser],
        *,
        connection_key: Callable[[str, str, str], str],
        purged_before: Callable[[str, str, str], str | None] | None = None,
        gate: MailboxGate | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._gate = gate or MailboxGate(tables, queue)
        self._audit = audit
        self._tables = tables
        self._queue = queue
        self._releasers = releasers
        self._connection_key = connection_key
        self._purged_before = purged_before or (lambda _tenant, _user, _kind: None)
        self._clock = clock or (lambda: datetime.now(UTC))

    def start(self, tenant_id: str, user_id: str, kind: str, requested_by: str) -> PurgeJob:
        """Start a purge of one user's ``kind`` data, or return the one already under way."""
        partition = table_key(tenant_id)
        pointer_key = _POINTER + table_key(user_id, kind)
        pointer = self._tables.get(JOBS, partition, pointer_key)
        if pointer is not None:
            current = self.get(tenant_id, str(pointer["jobId"]))
            if current is not None and current.state in OPEN_STATES:
                self._resend_if_stale(current)
                return current

        job_id = uuid.uuid4().hex
        now = self._now()
        row = {
            "PartitionKey": partition,
            "RowKey": job_id,
            "userId": user_id,
            "kind": kind,
            "state": str(PurgeState.QUEUED),
            "requestedBy": requested_by,
            "requestedAt": now,
            "updatedAt": now,
        }
        self._tables.upsert(JOBS, row, replace=True)
        claim = {"PartitionKey": partition, "RowKey": pointer_key, "jobId": job_id}
        try:
            # The pointer goes after the job row and conditionally: of racing starts one wins,
            # and every other answers the winner's job, whose row already exists.
            self._tables.update(JOBS, claim, etag=None if pointer is None else pointer[ETAG])
        except ConflictError:
            self._tables.delete(JOBS, partition, job_id)
            raced = self._tables.get(JOBS, partition, pointer_key)
            winner = self.get(tenant_id, str(raced["jobId"])) if raced else None
            if winner is None:
                raise
            return winner
        self._send(tenant_id, job_id)
        extra = {"tenant_id": tenant_id, "user": user_id, "kind": kind, "job": job_id}
        logger.info("purge queued", extra=extra)
        job = self.get(tenant_id, job_id)
        if job is None:
            message = f"purge job {job_id} vanished right after it was written"
            raise ConflictError(message)
        return job

    def get(self, tenant_id: str, job_id: str) -> PurgeJob | None:
        """Return one purge job of a tenant, or ``None`` (also for an id this store never made)."""
        if len(job_id) != 32 or any(ch not in "0123456789abcdef" for ch in job_id):
            return None
        row = self._tables.get(JOBS, table_key(tenant_id), job_id)
        return None if row is None else _job(tenant_id, row)

    def run(self, message: Mapping[str, Any]) -> None:
        """Work through one delivery of a purge job: some batches, then done or re-queued.

        Raises:
            InvalidJobError: when the message is not a purge job.
        """
        tenant_id, job_id = parse_message(message)
        job = self.get(tenant_id, job_id)
        if job is None or job.state not in OPEN_STATES:
            extra = {"tenant": tenant_id, "job": job_id}
            logger.info("purge job skipped: unknown or finished", extra=extra)
            return
        with self._gate.hold_connection(tenant_id, job.user_id, job.kind) as held:
            if not held:
                self._send(tenant_id, job_id, delay_s=BUSY_RETRY_S)
                logger.info("purge waits for a sync of its connection", extra={"job": job_id})
                return
            self._work(job)

    def _work(self, job: PurgeJob) -> None:
        """Release batches of the job's items, then finish it or send it on to continue."""
        tenant_id, job_id = job.tenant_id, job.job_id
        releaser = self._releasers[job.kind]
        connection = self._connection_key(tenant_id, job.user_id, job.kind)
        counts = {**dict.fromkeys(COUNTS, 0), **job.counts}
        watermark = self._watermark(job)
        # A purge asked for again meanwhile moved the watermark: items walked past are looked
        # at again, since some of them may now be due.
        walked: str | None = job.walked_to if watermark == job.watermark else ""
        self._update(job, PurgeState.RUNNING, counts, walk=(walked, watermark))
        for _ in range(BATCHES_PER_RUN):
            released, walked = releaser.release_batch(
                tenant_id=tenant_id,
                user_id=job.user_id,
                connection=connection,
                size=BATCH_SIZE,
                before=instant(watermark),
                after=walked or "",
            )
            for name, count in released.items():
                counts[name] = counts.get(name, 0) + count
            if walked is None and self._watermark(job) != watermark:
                # Asked for again while this walk ran: one more walk under the new watermark.
                self._update(job, PurgeState.RUNNING, counts, walk=("", watermark))
                break
            if walked is None:
                self._update(job, PurgeState.COMPLETED, counts, finished=True)
                if self._watermark(job) != watermark:
                    # Asked for again just before that write: the request found this job open
                    # and answered with it, so it walks once more under the new watermark.
                    self._update(job, PurgeState.RUNNING, counts, walk=("", watermark))
                    break
                self._record(job, Outcome.SUCCEEDED, counts)
                logger.info("purge completed", extra={"job": job_id, **_snake(counts)})
                return
            self._update(job, PurgeState.RUNNING, counts, walk=(walked, watermark))
        self._send(tenant_id, job_id)
        logger.info("purge continues in another delivery", extra={"job": job_id})

    def _watermark(self, job: PurgeJob) -> str:
        """Return the instant before which the purge releases mail: the user's latest purge.

        The request marks the connection before it records the job; a job whose connection
        holds no mark (it was removed meanwhile) uses the time it was asked for.
        """
        return self._purged_before(job.tenant_id, job.user_id, job.kind) or job.requested_at

    def fail(self, message: Mapping[str, Any]) -> None:
        """Mark a poisoned purge job ``failed``, so its status says so and a new one may start."""
        try:
            tenant_id, job_id = parse_message(message)
        except InvalidJobError:
            logger.warning("poisoned purge message is not a purge job")
            return
        job = self.get(tenant_id, job_id)
        if job is not None and job.state in OPEN_STATES:
            self._update(job, PurgeState.FAILED, dict(job.counts), finished=True)
            self._record(job, Outcome.FAILED, job.counts)
            logger.warning("purge job failed", extra={"job": job_id})

    def _record(self, job: PurgeJob, outcome: Outcome, counts: Mapping[str, int]) -> None:
        """Add the job's end to the audit log, as done by whoever asked for it."""
        if self._audit is None:
            return
        action = Action.EMAILS_PURGE if job.kind == MAIL else Action.EVENTS_PURGE
        self._audit.record(
            tenant_id=job.tenant_id,
            actor_id=job.requested_by,
            action=action,
            outcome=outcome,
            target_user_id=job.user_id,
            target_id=job.job_id,
            reason=None if outcome is Outcome.SUCCEEDED else "job_poisoned",
            counts=counts,
        )

    def _resend_if_stale(self, job: PurgeJob) -> None:
        updated = datetime.fromisoformat(job.updated_at)
        if job.state == PurgeState.QUEUED and self._clock() - updated > STALE_AFTER:
            self._send(job.tenant_id, job.job_id)
            logger.info("stale purge job sent again", extra={"job": job.job_id})

    def _update(
        self,
        job: PurgeJob,
        state: PurgeState,
        counts: Mapping[str, int],
        *,
        finished: bool = False,
        walk: tuple[str | None, str] | None = None,
    ) -> None:
        row: Entity = {
            "PartitionKey": table_key(job.tenant_id),
            "RowKey": job.job_id,
            "state": str(state),
            "updatedAt": self._now(),
            **{f"count_{name}": int(value) for name, value in counts.items()},
        }
        if walk is not None:
            row["walkedTo"], row["watermark"] = walk[0] or "", walk[1]
        if finished:
            row["finishedAt"] = row["updatedAt"]
        self._tables.upsert(JOBS, row)

    def _send(self, tenant_id: str, job_id: str, *, delay_s: int = 0) -> None:
        self._queue.send(PURGE_QUEUE, purge_message(tenant_id, job_id), delay_s=delay_s)

    def _now(self) -> str:
        return self._clock().isoformat(timespec="seconds")


def purge_message(tenant_id: str, job_id: str) -> dict[str, str]:
    """Return the queue message that runs a purge job."""
    return {"kind": "purge", "tenant": tenant_id, "job": job_id}


def parse_message(message: Mapping[str, Any]) -> tuple[str, str]:
    """Read a purge job's message: its tenant and job id.

    Raises:
        InvalidJobError: when the message is not a purge job.
    """
    tenant, job = message.get("tenant"), message.get("job")
    if message.get("kind") != "purge" or not isinstance(tenant, str) or not isinstance(job, str):
        msg = "purge job needs kind 'purge', a tenant and a job id"
        raise InvalidJobError(msg)
    if not 0 < len(tenant) <= 64 or len(job) != 32:
        msg = "purge job ids have the wrong length"
        raise InvalidJobError(msg)
    return tenant, job


def _job(tenant_id: str, row: Mapping[str, Any]) -> PurgeJob:
    counts = {
        name.removeprefix("count_"): int(value)
        for name, value in row.items()
        if name.startswith("count_") and isinstance(value, int)
    }
    return PurgeJob(
        tenant_id=tenant_id,
        job_id=str(row["RowKey"]),
        user_id=str(row.get("userId", "")),
        kind=str(row.get("kind", "")),
        state=str(row.get("state", PurgeState.QUEUED)),
        requested_by=str(row.get("requestedBy", "")),
        requested_at=str(row.get("requestedAt", "")),
        updated_at=str(row.get("updatedAt", "")),
        finished_at=row.get("finishedAt"),
        counts=counts,
        walked_to=str(row.get("walkedTo") or ""),
        watermark=str(row.get("watermark") or ""),
    )


def _snake(counts: Mapping[str, int]) -> dict[str, int]:
    return {f"count_{name}": value for name, value in counts.items()}


def require_job(job: PurgeJob | None, job_id: str) -> PurgeJob:
    """Return the job, or raise as the API does for an unknown id.

    Raises:
        NotFoundError: when there is no such job.
    """
    if job is None:
        message = f"purge {job_id} not found"
        raise NotFoundError(message)
    return job
