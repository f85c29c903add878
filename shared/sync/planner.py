"""The sync fan-out, in two stages, so 100,000 connections are enqueued well inside one slot.

Stage 1, :meth:`SyncPlanner.fan_out` (timer ``sync_fanout``, every 10 minutes): lists the tenants
that have connections, one small index partition, in key order, and sends one ``{"kind":
"fanout", "tenant", "lastTenant"?, "slot"}`` message per span of up to :data:`SPAN_TENANTS`
consecutive tenants (``tenant`` the first, ``lastTenant`` the last, left out when it is the
first) to ``sync-fanout`` (the messages are described in :mod:`shared.sync.fanoutjob`). It
reads no connection, so it takes seconds however many connections there are.

Stage 2, :meth:`SyncPlanner.fan_out_page` (queue ``sync-fanout``, scaled out by the host): reads
one page of at most :data:`PAGE_SIZE` due connections (``active``, or ``error`` to retry them)
of the span's tenants, in key order, with one query however many tenants the page crosses. It
claims the slot for each connection of the page and sends one sync job ``{"kind", "tenant",
"user", "slot"}`` per claim won, concurrently, to its kind's queue (``mail-sync`` or
``calendar-sync``). When more remain it first sends the same message with the page's
continuation token under ``"page"``, so the next page runs on another instance while this one
works, and records that it did (:meth:`ConnectionStore.pass_on_once`): a page retried five
times, or sent twice by a timer that fired twice, passes its next page on once, where passing it
on at each delivery would multiply the pages after it with every page of the span. A fleet of
small tenants thus costs two queries (connections, claims) per 1,000 connections, not per
tenant: a page of Table Storage holds at most 1,000 entities, and the service may end one early
where the range crosses a partition boundary it serves from another server.

One job per connection per slot (BR-15): the claim is a conditional write per connection (see
:meth:`shared.sync.slotclaims.SlotClaims.claim_slots`), spread over shard partitions and
written in transactions of up to 100 claims of one partition. A second timer run, a replayed
fan-out message or a duplicated page finds the slot claimed and sends nothing. A mail job that
could not be sent has its claim released, and the stage 2 message raises so the queue retries
it; the retry claims and sends only what is left.

A stage 2 message that keeps failing lands in ``sync-fanout-poison``, where the poison sweep
(:mod:`shared.sync.poisoned`) calls :meth:`SyncPlanner.record_poisoned` to make it visible: a
WARNING log line with the span, slot and counts, and a ``sync.fanoutPoisoned`` entry in the
audit log of each tenant with due connections on that page (actor ``system``, outcome
``failed``, reason ``job_poisoned``) with that tenant's due connections, which get no job in
that slot, and the deliveries it went through. It then passes the page's successor on if no
delivery did, so the rest of the span still runs in that slot.

Known limitations: if the worker dies between claiming and sending, those connections get no
job in that slot and are picked up by the next one, and so does a connection whose claim was
written but whose answer was lost when re-reading it failed too (a failed claim gives back
every claim it knows it won, so the page's retry sends those); a span whose stage 1 message
could not be sent (the timer raises) waits for the next slot too. A poisoned page's count of
due connections is read when the poison is handled, so it counts the page as it is then,
including connections whose jobs an earlier attempt did send; a page that cannot be read then
is audited, uncounted, in every tenant of its span. A page that failed because it could not be
read never sent its successor, so the pages after it miss that slot, uncounted and unaudited,
and so do they when a worker dies between recording and sending the successor. A tenant
indexed after stage 1 ran is fanned out in that slot only when its key falls inside a span's
range. The next slot's
message, sent up to one period early by a timer whose clock runs fast, is taken as it is, so
its connections get that slot's job early and none when the slot begins.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import FANOUT_QUEUE, MAX_DEQUEUE_COUNT
from shared.audit.log import SYSTEM_ACTOR, Action, Outcome
from shared.errors import InvalidJobError, TransientError, ValidationError
from shared.sync.fanoutjob import FanoutJob, FanoutResult, jobs_by_queue, sync_job
from shared.sync.jobs import is_id
from shared.sync.schedule import parse_slot, slot_of, slot_text
from shared.sync.slotclaims import MAX_SLOT_AHEAD

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from shared.adapters.queues import JobQueue
    from shared.audit.log import AuditLog
    from shared.sync.connections import Connection
    from shared.sync.connectionstore import ConnectionStore
    from shared.sync.slotclaims import SlotClaim

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
"""Connections per stage 2 invocation: one Table Storage query page."""
PASSED_KEPT = timedelta(hours=1)
"""How long the records of pages passed on are kept: a message is retried well within it."""
SPAN_TENANTS = 50
"""Tenants per stage 1 message. Fewer spans mean fewer, fuller pages; more spans mean more
chains of pages running side by side, so the last page is sent sooner."""


class SyncPlanner:
    """Finds connections due for sync and enqueues their jobs, once per slot."""

    def __init__(
        self,
        connections: ConnectionStore,
        queue: JobQueue,
        *,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], datetime] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._connections = connections
        self._queue = queue
        self._page_size = page_size
        self._clock = clock or _utcnow
        self._audit = audit

    def fan_out(self, now: datetime | None = None) -> int:
        """Stage 1: send one fan-out job per span of tenants for the current slot.

        Returns:
            How many jobs (spans) were sent.

        Raises:
            TransientError: when a job could not be sent; the others were.
        """
        slot = parse_slot(slot_of(now or self._clock()))
        indexed = list(self._connections.list_indexed_tenants())
        # A tenant id Entra could not have issued gets no job its worker would take.
        tenants = [tenant_id for tenant_id in indexed if is_id(tenant_id)]
        if len(tenants) < len(indexed):
            logger.warning(
                "sync fan-out skips indexed tenants whose ids are not ids",
                extra={"slot": slot_text(slot), "skipped": len(indexed) - len(tenants)},
            )
        spans = [
            tenants[start : start + SPAN_TENANTS] for start in range(0, len(tenants), SPAN_TENANTS)
        ]
        jobs = [
            FanoutJob(span[0], slot, last_tenant_id=span[-1] if len(span) > 1 else None)
            for span in spans
        ]
        sent = self._queue.send_many(FANOUT_QUEUE, [job.as_message() for job in jobs])
        logger.info(
            "sync fan-out planned",
            extra={"slot": slot_text(slot), "tenants": len(tenants), "spans": sent},
        )
        self._sweep(slot)
        return sent

    def _sweep(self, slot: datetime) -> None:
        """Delete the records of pages passed on more than an hour ago; a failure only warns."""
        try:
            swept = self._connections.sweep_passed(slot - PASSED_KEPT)
        except TransientError:
            logger.warning(
                "sync fan-out could not sweep its page records", extra={"slot": slot_text(slot)}
            )
            return
        logger.info("sync fan-out page records swept", extra={"swept": swept})

    def fan_out_page(self, raw_job: Mapping[str, Any]) -> FanoutResult:
        """Stage 2: enqueue one sync job per due connection of one page, once per slot.

        Raises:
            InvalidJobError: when the message is malformed.
            TransientError: when some sync jobs could not be sent; their claims are released.
        """
        job = FanoutJob.parse(raw_job)
        if job.slot > self._clock() + MAX_SLOT_AHEAD:
            # A timer whose clock runs fast named a slot still to come; the next correct one
            # covers it, and claiming it now would hold every connection back until then.
            logger.warning(
                "sync fan-out refused: its slot is ahead of this worker's clock",
                extra={**_span_ids(job), "slot": slot_text(job.slot)},
            )
            return FanoutResult(due=0, sent=0, more=False)
        connections, following = self._page(job)
        if following is not None:
            self._pass_on(job, following)

        claims = self._connections.claim_slots(connections, job.slot)
        self._send_jobs(job, claims)

        result = FanoutResult(due=len(connections), sent=len(claims), more=following is not None)
        logger.info(
            "sync fan-out page done",
            extra={
                **_span_ids(job),
                "slot": slot_text(job.slot),
                "due": result.due,
                "sent": result.sent,
                "skipped": result.skipped,
                "more": result.more,
            },
        )
        return result

    def record_poisoned(self, raw_job: Mapping[str, Any], *, message_id: str) -> dict[str, int]:
        """Make a stage 2 message that kept failing visible: a warning and audit entries.

        Each tenant with due connections on the page gets an entry with its own count; when the
        page cannot be read, or holds none, each tenant of the span gets one without a count.
        A readable page with more after it passes the next page on, so the rest of its span
        still gets this slot's jobs.

        Returns:
            The counts logged: ``attempts``, and ``due`` (the whole page's) when it can be read.

        Raises:
            InvalidJobError: when the message is not a fan-out job; nothing is recorded.
            TransientError: when storage fails; the warning is logged first.
        """
        job = FanoutJob.parse(raw_job)
        counts = {"attempts": MAX_DEQUEUE_COUNT}
        ids = {**_span_ids(job), "slot": slot_text(job.slot), "message_id": message_id}
        due: Counter[str] = Counter()
        following: str | None = None
        try:
            connections, following = self._page(job)
        except InvalidJobError:
            # The page token itself may be why it failed; the entries then go without a count.
            pass
        except TransientError:
            logger.warning(
                "sync fan-out page poisoned; its connections miss this slot",
                extra={**ids, **counts, "continued": job.page is not None},
            )
            raise
        else:
            due = Counter(connection.tenant_id for connection in connections)
            counts["due"] = due.total()
        logger.warning(
            "sync fan-out page poisoned; its connections miss this slot",
            extra={**ids, **counts, "continued": job.page is not None},
        )
        if self._audit is not None:
            attempts = {"attempts": MAX_DEQUEUE_COUNT}
            entries = {tenant: attempts | {"due": count} for tenant, count in due.items()}
            if not entries:
                span = self._connections.list_indexed_tenants(*job.span)
                entries = dict.fromkeys(span, attempts)
            for tenant_id, entry_counts in entries.items():
                self._audit.record(
                    tenant_id=tenant_id,
                    actor_id=SYSTEM_ACTOR,
                    action=Action.FANOUT_POISONED,
                    outcome=Outcome.FAILED,
                    target_id=slot_text(job.slot),
                    reason="job_poisoned",
                    counts=entry_counts,
                )
        if following is not None:
            self._pass_on(job, following)
        return counts

    def _page(self, job: FanoutJob) -> tuple[list[Connection], str | None]:
        """Read the page of due connections whose jobs a worker can take.

        Raises:
            InvalidJobError: when the page token is not one of a previous page.
        """
        try:
            found, following = self._connections.due_page(
                *job.span, size=self._page_size, token=job.page
            )
        except ValidationError as error:
            msg = "page: must be a continuation token from a previous fan-out page"
            raise InvalidJobError(msg) from error
        runnable = [c for c in found if is_id(c.tenant_id) and is_id(c.user_id)]
        if len(runnable) < len(found):
            # Its worker would refuse such a job and poison it; one refused send must not
            # cost the page's other connections their jobs either.
            logger.warning(
                "sync fan-out skips connections whose ids are not ids",
                extra={**_span_ids(job), "skipped": len(found) - len(runnable)},
            )
        return runnable, following

    def _pass_on(self, job: FanoutJob, following: str) -> None:
        """Send the page after this one, unless a delivery or copy of this page already did.

        A page retried five times, or sent twice by a timer that fired twice, would otherwise
        pass it on each time, and the copies would multiply with every page of the span.

        Raises:
            TransientError: when it could not be sent; the record is taken back first.
        """
        passing = job.passing_id(following)
        if not self._connections.pass_on_once(job.slot, passing):
            return
        try:
            self._queue.send(FANOUT_QUEUE, job.next_page(following).as_message())
        except TransientError:
            self._connections.forget_passed(job.slot, passing)
            raise

    def _send_jobs(self, job: FanoutJob, claims: Sequence[SlotClaim]) -> None:
        """Send one sync job per claim; give back the claims of every job that was not sent.

        Raises:
            TransientError: when some jobs were not sent, so the queue retries the page.
        """
        unsent: list[SlotClaim] = []
        groups = list(jobs_by_queue(claims).items())
        for position, (queue, group) in enumerate(groups):
            try:
                failed = self._queue.send_each(queue, [sync_job(claim) for claim in group])
            except Exception:
                # Nothing of this group or the ones after it went out: none keeps its claim.
                later = [claim for _, rest in groups[position:] for claim in rest]
                self._connections.release_slots([*unsent, *later])
                raise
            unsent.extend(group[index] for index in failed)
        if unsent:
            self._give_back(job, unsent, len(claims))

    def _give_back(self, job: FanoutJob, unsent: Sequence[SlotClaim], claimed: int) -> None:
        released = self._connections.release_slots(unsent)
        logger.warning(
            "sync fan-out could not send every sync job; the page is retried",
            extra={**_span_ids(job), "failed": len(unsent), "released": released},
        )
        msg = (
            f"fan-out for tenant {job.tenant_id} slot {slot_text(job.slot)}: "
            f"{len(unsent)} of {claimed} sync jobs were not sent; the page is retried"
        )
        raise TransientError(msg)


def _span_ids(job: FanoutJob) -> dict[str, str]:
    """Return the ids a log line names a stage 2 job by: its first and last tenant."""
    first, last = job.span
    return {"tenant": first, "last_tenant": last}


def _utcnow() -> datetime:
    return datetime.now(UTC)
