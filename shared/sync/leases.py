"""Per-mailbox leases in Table Storage: Outlook's 4-request limit and one job per connection.

Outlook lets an app have 4 Graph requests in flight per mailbox and answers the fifth with 429
``ApplicationThrottled`` "MailboxConcurrency" (BR-06). Jobs for one mailbox run on different
workers (duplicate deliveries, a re-queued job overlapping the next round, later calendar and
sending jobs), so the count lives in the ``leases`` table, one partition per mailbox (tenant id
and user object id):

- ``slot-0`` to ``slot-3``: one per Graph request a job may have in flight, held for the job's
  whole run. A calendar job makes its requests one at a time and holds one slot. A mail job
  asks for :data:`MAIL_SLOTS` (3, leaving one for the mailbox's calendar job), takes as many of
  them as are free, at least one, and syncs that many folders at once, one request in flight
  per folder (:meth:`MailboxGate.admit_slots`); so the mailbox never has more requests in
  flight than slots held. A sending job holds one slot and no connection
  (:meth:`MailboxGate.request_slot`), since several emails of one user may go at once.
- ``conn-<kind>``: the one job syncing that connection. A second job never runs beside it.
- ``wait-<kind>``: the one job waiting for a busy connection. The first job to find the
  connection busy takes this row and re-queues itself every :data:`WAIT_S` seconds, carrying its
  waiter token, until the connection is free; any other job arriving meanwhile ends as a no-op,
  since the waiter's round, which resumes from the stored cursors, covers it. A continuation the
  holder sends just before it lets go also becomes the waiter, so it is never lost.

Each row is a lease: an owner id and an expiry. It is taken by a conditional write, an insert when
the row is absent or an ETag-matched replace when it has expired, so of two workers racing for
a row one gets ``ConflictError`` and tries the next row. While its job runs, a thread renews the
job's leases every third of :data:`LEASE_S`; when the job ends they are deleted (ETag-matched) in
``finally``. A worker that dies stops renewing, and its leases lapse within :data:`LEASE_S`. A job
that finds no free slot re-queues itself with a short visibility delay instead of waiting.

Known limitations: expiry is judged by each worker's own clock, so clocks that disagree by
seconds shorten or stretch a lease by as much. A job whose renewals keep failing (Table Storage
out of reach for :data:`LEASE_S`) loses its leases while it still runs, and another job may then
start beside it; the cursor ETags keep the data right, but the mailbox may briefly see one request
more than the slots count. Requests made outside these leases (consent, the folder list of the
API, meetings created through the API) are not counted, so with a mail job holding three slots
and a calendar job the fourth, such a request is a fifth in flight, which Outlook may refuse
with 429 (handled as throttling).
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.errors import ConflictError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

logger = logging.getLogger(__name__)

LEASES = "leases"
SLOTS_PER_MAILBOX = 4
MAIL_SLOTS = 3
"""Slots a mail job asks for: one per folder synced at once, one left for the calendar job."""
LEASE_S = 30.0
WAIT_S = 10
SLOT_RETRY_S = 5
JITTER_S = 3
WAITER = "waiter"
"""The job field that carries a waiting job's token from one delivery to the next."""


class LeaseRows(Protocol):
    """The part of ``TableEntityStore`` leases need; a fake in unit tests."""

    def list_partition(self, table: str, partition: str) -> Iterator[dict[str, Any]]:
        """Yield every entity of one partition."""
        ...

    def update(self, table: str, entity: Mapping[str, Any], *, etag: str | None) -> str:
        """Replace an entity if unchanged (create it if no ETag); return the new ETag."""
        ...

    def delete(self, table: str, partition: str, row: str, *, etag: str | None = None) -> None:
        """Delete an entity, only if unchanged when an ETag is given."""
        ...


class JobSender(Protocol):
    """The part of ``JobQueue`` the gate needs to re-queue a job."""

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        """Send one job, visible after ``delay_s`` seconds."""
        ...


@dataclass(slots=True)
class Lease:
    """A held lease row and the ETag of its last write."""

    partition: str
    row: str
    owner: str
    etag: str


def mailbox_partition(tenant_id: str, user_id: str) -> str:
    """Return the leases partition of a mailbox: its tenant and the user's object id."""
    return table_key(tenant_id, user_id)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LeaseTable:
    """Takes, renews and gives back leases on rows of the ``leases`` table."""

    def __init__(
        self,
        tables: LeaseRows,
        *,
        lease_s: float = LEASE_S,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._tables = tables
        self._lease_s = lease_s
        self._clock = clock

    def take(self, partition: str, rows: Sequence[str], owner: str) -> Lease | None:
        """Take the first of ``rows`` that is free, expired or already the owner's.

        Returns:
            The lease, or ``None`` when every row is held by another live owner.
        """
        taken = self.take_many(partition, rows, owner, 1)
        return taken[0] if taken else None

    def take_many(self, partition: str, rows: Sequence[str], owner: str, count: int) -> list[Lease]:
        """Take up to ``count`` of ``rows`` that are free, expired or already the owner's.

        The partition is read once; each row is then taken by its own conditional write.

        Returns:
            The leases taken, in the order of ``rows``; empty when every row is held.
        """
        current = {e["RowKey"]: e for e in self._tables.list_partition(LEASES, partition)}
        taken: list[Lease] = []
        for row in rows:
            if len(taken) == count:
                break
            found = current.get(row)
            if found is not None and found.get("owner") != owner and not self._expired(found):
                continue
            entity = self._entity(partition, row, owner)
            try:
                etag = self._tables.update(LEASES, entity, etag=found[ETAG] if found else None)
            except ConflictError:
                continue
            taken.append(Lease(partition, row, owner, etag))
        return taken

    def renew(self, lease: Lease) -> bool:
        """Push a held lease's expiry forward; False when it lapsed and another owner took it."""
        entity = self._entity(lease.partition, lease.row, lease.owner)
        try:
            lease.etag = self._tables.update(LEASES, entity, etag=lease.etag)
        except ConflictError:
            return False
        return True

    def release(self, lease: Lease) -> None:
        """Give a lease back; a lease that lapsed and was taken by another owner stays theirs."""
        try:
            self._tables.delete(LEASES, lease.partition, lease.row, etag=lease.etag)
        except ConflictError:
            logger.warning("lease lapsed before its job ended", extra={"lease": lease.row})

    def release_row(self, partition: str, row: str, owner: str) -> None:
        """Give back a row this owner holds from an earlier delivery, if it still does."""
        found = next((e for e in self._rows(partition) if e["RowKey"] == row), None)
        if found is None or found.get("owner") != owner:
            return
        self.release(Lease(partition, row, owner, str(found[ETAG])))

    def _rows(self, partition: str) -> Iterator[dict[str, Any]]:
        return self._tables.list_partition(LEASES, partition)

    def _entity(self, partition: str, row: str, owner: str) -> dict[str, Any]:
        expires = self._clock() + timedelta(seconds=self._lease_s)
        return {
            "PartitionKey": partition,
            "RowKey": row,
            "owner": owner,
            "expiresAt": expires.isoformat(timespec="milliseconds"),
        }

    def _expired(self, entity: Mapping[str, Any]) -> bool:
        try:
            expires = datetime.fromisoformat(str(entity.get("expiresAt", "")))
        except ValueError:
            return True
        return expires <= self._clock()


class _Keeper:
    """Renews leases from a daemon thread until stopped, so a long job keeps them."""

    def __init__(self, table: LeaseTable, leases: Sequence[Lease], every_s: float) -> None:
        self._table = table
        self._leases = leases
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> _Keeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            for lease in self._leases:
                try:
                    kept = self._table.renew(lease)
                except TransientError:
                    # The next tick tries again; the lease outlives two missed renewals.
                    logger.debug("lease renewal failed", extra={"lease": lease.row})
                    continue
                if not kept:
                    logger.warning("lease lapsed while its job ran", extra={"lease": lease.row})


class MailboxGate:
    """Admits a job to a mailbox only with its connection to itself and a free request slot."""

    def __init__(
        self,
        tables: LeaseRows,
        queue: JobSender,
        *,
        slots: int = SLOTS_PER_MAILBOX,
        lease_s: float = LEASE_S,
        wait_s: int = WAIT_S,
        slot_retry_s: int = SLOT_RETRY_S,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._leases = LeaseTable(tables, lease_s=lease_s, clock=clock)
        # A waiter that comes back late still finds its row: it lasts three waits.
        self._waits = LeaseTable(tables, lease_s=3 * wait_s, clock=clock)
        self._queue = queue
        self._slots = tuple(f"slot-{n}" for n in range(slots))
        self._lease_s = lease_s
        self._wait_s = wait_s
        self._slot_retry_s = slot_retry_s

    @contextmanager
    def admit(
        self, tenant_id: str, user_id: str, kind: str, queue: str, job: Mapping[str, Any]
    ) -> Iterator[bool]:
        """Hold the connection and one request slot while the body runs; yield True.

        Yields False when the job may not run now: it has been re-queued on ``queue`` (or, when
        another job already waits for the connection, dropped) and the body must end at once.
        """
        with self.admit_slots(tenant_id, user_id, kind, queue, job, slots=1) as held:
            yield held > 0

    @contextmanager
    def admit_slots(
        self,
        tenant_id: str,
        user_id: str,
        kind: str,
        queue: str,
        job: Mapping[str, Any],
        *,
        slots: int,
    ) -> Iterator[int]:
        """Hold the connection and up to ``slots`` request slots; yield how many are held.

        The job gets as many of the wanted slots as are free, at least one. Yields 0 when the
        job may not run now, as :meth:`admit` yields False.
        """
        partition = mailbox_partition(tenant_id, user_id)
        held = self._enter(partition, kind, queue, job, slots)
        if held is None:
            yield 0
            return
        try:
            with _Keeper(self._leases, held, self._lease_s / 3):
                yield len(held) - 1
        finally:
            self._release(held)

    @contextmanager
    def request_slot(
        self, tenant_id: str, user_id: str, queue: str, job: Mapping[str, Any]
    ) -> Iterator[bool]:
        """Hold one request slot of the mailbox, and no connection, while the body runs.

        For jobs of which several may run for one mailbox at once (sending). Yields False when
        every slot is held: the job has been re-queued on ``queue`` and the body must end.
        """
        partition = mailbox_partition(tenant_id, user_id)
        slot = self._leases.take(partition, self._slot_order(), uuid.uuid4().hex)
        if slot is None:
            self._requeue(queue, job, self._slot_retry_s, "mailbox_busy")
            yield False
            return
        try:
            with _Keeper(self._leases, [slot], self._lease_s / 3):
                yield True
        finally:
            self._release([slot])

    @contextmanager
    def hold_connection(self, tenant_id: str, user_id: str, kind: str) -> Iterator[bool]:
        """Hold a connection against its sync jobs while the body runs, taking no Graph slot.

        For work that must not overlap a sync of the connection but calls no Graph (a purge).
        Yields False at once when a job holds the connection; the caller retries later.
        """
        partition = mailbox_partition(tenant_id, user_id)
        lease = self._leases.take(partition, (f"conn-{kind}",), uuid.uuid4().hex)
        if lease is None:
            yield False
            return
        try:
            with _Keeper(self._leases, [lease], self._lease_s / 3):
                yield True
        finally:
            self._release([lease])

    def _enter(
        self, partition: str, kind: str, queue: str, job: Mapping[str, Any], slots: int
    ) -> list[Lease] | None:
        owner = uuid.uuid4().hex
        connection = self._leases.take(partition, (f"conn-{kind}",), owner)
        if connection is None:
            self._wait(partition, kind, queue, job)
            return None
        try:
            token = job.get(WAITER)
            if isinstance(token, str):
                self._waits.release_row(partition, f"wait-{kind}", token)
            taken = self._leases.take_many(partition, self._slot_order(), owner, slots)
        except BaseException:
            self._leases.release(connection)
            raise
        if not taken:
            self._leases.release(connection)
            plain = {k: v for k, v in job.items() if k != WAITER}
            self._requeue(queue, plain, self._slot_retry_s, "mailbox_busy")
            return None
        return [connection, *taken]

    def _release(self, held: Sequence[Lease]) -> None:
        for lease in reversed(held):
            try:
                self._leases.release(lease)
            except TransientError:
                # Left alone, the lease lapses within LEASE_S; the job's outcome stands.
                logger.warning("lease release failed", extra={"lease": lease.row})

    def _wait(self, partition: str, kind: str, queue: str, job: Mapping[str, Any]) -> None:
        token = job.get(WAITER)
        token = token if isinstance(token, str) else uuid.uuid4().hex
        if self._waits.take(partition, (f"wait-{kind}",), token) is None:
            logger.info("job dropped: another job waits for its connection", extra={"kind": kind})
            return
        self._requeue(queue, {**job, WAITER: token}, self._wait_s, "connection_busy")

    def _slot_order(self) -> list[str]:
        # Start at a random slot so that racing workers mostly try different rows.
        start = secrets.randbelow(len(self._slots))
        return [*self._slots[start:], *self._slots[:start]]

    def _requeue(self, queue: str, job: Mapping[str, Any], delay_s: int, reason: str) -> None:
        delay = delay_s + secrets.randbelow(JITTER_S + 1)
        self._queue.send(queue, job, delay_s=delay)
        logger.info("job re-queued", extra={"delay_s": delay, "reason": reason})
