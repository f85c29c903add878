"""What every sync worker shares: its job message, admission to the mailbox, and its outcomes.

A sync job names one connection (tenant, user, kind). :class:`ConnectionSyncRunner` runs it the
same way for every kind: a job whose connection is not due ends at once, and so does a second
copy of a fan-out slot's job once the connection has completed that slot's round (``lastSlot``
on its row; the queue client's retry of a send whose answer was lost can deliver a job twice,
and continuations and retries carry their first job's slot); otherwise the job takes
its connection and the mailbox's Graph request slots it asks for (:class:`MailboxGate`: one for
a calendar job, up to :data:`shared.sync.leases.MAIL_SLOTS` for a mail job, as many as are
free), reads the connection again, gets a delegated token (refreshed once when Graph refuses it)
and hands over to the kind's ``_sync`` with the number of slots it holds. A round that must
continue re-queues the job as the kind's ``_continuation`` makes it (a mail job notes the
folders it finished). Failures end the same way for every kind: consent needed moves the
connection to ``reauth_required``; throttling re-queues the job after ``Retry-After`` (at most
an hour); a delta link that expires twice in one job re-queues it five minutes out; a cursor
moved by another job ends this one quietly, and so does a revocation noticed between pages.
Anything else raises, so the queue retries the job and finally poisons it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from shared.errors import (
    MAX_RETRY_AFTER_S,
    AccessTokenRejectedError,
    DeltaCursorExpiredError,
    InvalidJobError,
    ReauthRequiredError,
    SyncError,
    ThrottledError,
)
from shared.matching.companies import CompanyIndex, CompanyMatchData
from shared.sync.connections import DUE_STATES, REAUTH_REQUIRED, REVOKED, Connection
from shared.sync.leases import MailboxGate
from shared.sync.schedule import parse_slot, slot_text
from shared.sync.slotclaims import MAX_SLOT_AHEAD

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.sync.connectionstore import ConnectionStore

logger = logging.getLogger(__name__)

INDEX_TTL_S = 60.0
DEFAULT_BACKFILL_DAYS = 360
RESET_BACKOFF_S = 300
RESET_BACKOFF_CODE = "delta_reset_backoff"
MAX_REQUEUE_DELAY_S = MAX_RETRY_AFTER_S
"""Longest a job is put off: a longer ``Retry-After`` waits this long and asks Graph again."""
_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


class CursorTakenError(SyncError):
    """Raised when another job moved a cursor first; this job's work is not needed."""


class ConnectionRevokedError(SyncError):
    """Raised when the user revoked the connection while its job ran: the job stores no more."""


class RoundResult(Protocol):
    """What a kind's round reports: whether it reached the end, and its JSON-ready record."""

    @property
    def complete(self) -> bool:
        """True when the round ended, False when the job must continue in another message."""
        ...

    def as_record(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectionJob:
    """A sync job as it travels on the queue: ``{"kind", "tenant", "user", "slot"?}``."""

    tenant_id: str
    user_id: str
    slot: datetime | None = None
    """The 10-minute slot the fan-out sent the job for; a job the product sent itself (a
    continuation or a retry) carries its first job's slot, and one sent by hand none."""
    KIND: ClassVar[str] = ""

    @classmethod
    def parse(cls, job: Mapping[str, Any]) -> Self:
        """Read a job from its queue JSON.

        Raises:
            InvalidJobError: when the job lacks its kind, tenant or user, or a field of its
                kind (see :meth:`_parse_fields`) is malformed.
        """
        tenant, user = job.get("tenant"), job.get("user")
        if job.get("kind") != cls.KIND or not is_id(tenant) or not is_id(user):
            msg = (
                f"{cls.KIND} job needs kind {cls.KIND!r} and tenant and user ids "
                "(letters, digits, hyphens)"
            )
            raise InvalidJobError(msg)
        slot = None if job.get("slot") is None else parse_slot(job.get("slot"))
        return cls(str(tenant), str(user), slot, **cls._parse_fields(job))

    @classmethod
    def _parse_fields(cls, job: Mapping[str, Any]) -> dict[str, Any]:
        """Return the kind's own fields of a job, checked; a kind with some overrides this.

        Raises:
            InvalidJobError: when one of them is malformed.
        """
        return {}

    def as_message(self) -> dict[str, Any]:
        """Return the job as queue JSON."""
        message = {"kind": self.KIND, "tenant": self.tenant_id, "user": self.user_id}
        return message if self.slot is None else {**message, "slot": slot_text(self.slot)}


def is_id(value: Any) -> bool:
    """Tell whether a job field is an id as Entra issues them (GUIDs), safe to log and key by."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


JobT = TypeVar("JobT", bound=ConnectionJob)
StatsT = TypeVar("StatsT", bound=RoundResult)


class ConnectionSyncRunner(Generic[JobT, StatsT]):
    """Runs one kind's sync jobs; subclasses say what a round does (``_sync``)."""

    job_type: type[JobT]
    kind: str
    queue_name: str
    request_slots: ClassVar[int] = 1
    """Graph request slots of the mailbox a job asks for (it runs with as many as are free)."""

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        directory: DirectoryService,
        queue: JobQueue,
        tables: TableEntityStore,
        gate: MailboxGate | None = None,
    ) -> None:
        self._connections = connections
        self._directory = directory
        self._queue = queue
        self._tables = tables
        self._gate = gate or MailboxGate(tables, queue)
        self._indexes: dict[str, tuple[float, CompanyIndex]] = {}
        self._indexes_lock = threading.Lock()

    def run(self, raw_job: Mapping[str, Any]) -> StatsT | None:
        """Sync one connection; return its stats, or ``None`` when the job ended early.

        The job holds its connection and one of the mailbox's Graph request slots while it runs
        (see :mod:`shared.sync.leases`); when either is busy it re-queues itself or, if another
        job already waits for the connection, ends as a no-op. A connection in ``error`` is
        synced like an active one, so it heals on the next slot.
        """
        job = self.job_type.parse(raw_job)
        if not self._due(job):
            return None
        tenant, user = job.tenant_id, job.user_id
        admit = self._gate.admit_slots(
            tenant, user, self.kind, self.queue_name, raw_job, slots=self.request_slots
        )
        with admit as held:
            # Read again once admitted: the job that held the connection may have changed it.
            connection = self._connections.get(tenant, user, self.kind) if held else None
            if connection is None or connection.state not in DUE_STATES:
                logger.info(
                    "sync job skipped: connection busy or not due",
                    extra={"kind": self.kind, "tenant": tenant, "user": user, "admitted": held > 0},
                )
                return None
            return self._run_admitted(job, connection, held)

    def _due(self, job: JobT) -> bool:
        connection = self._connections.get(job.tenant_id, job.user_id, self.kind)
        ids = {"kind": self.kind, "tenant": job.tenant_id, "user": job.user_id}
        if connection is None or connection.state not in DUE_STATES:
            logger.info("sync job skipped: connection not due", extra=ids)
            return False
        if job.slot is not None and job.slot <= last_slot(connection, datetime.now(UTC)):
            # A second copy of a slot's job: a send whose answer was lost is sent again by the
            # queue client's retry, so the fan-out may deliver one twice. Its round is done.
            logger.info("sync job skipped: its slot's round is done", extra=ids)
            return False
        return True

    def _run_admitted(self, job: JobT, connection: Connection, slots: int) -> StatsT | None:
        try:
            stats = self._sync_with_token(job, connection, slots)
        except ReauthRequiredError as error:
            self._connections.record_error(connection, error.code, state=REAUTH_REQUIRED)
            logger.warning(
                "connection needs consent again",
                extra={"kind": self.kind, "user": job.user_id, "code": error.code},
            )
            return None
        except ThrottledError as error:
            self._requeue(job, error.delay_s + 1, "throttled")
            return None
        except DeltaCursorExpiredError:
            self._connections.record_error(connection, RESET_BACKOFF_CODE)
            self._requeue(job, RESET_BACKOFF_S, RESET_BACKOFF_CODE)
            return None
        except CursorTakenError:
            logger.info(
                "sync job ends: another job moved the cursor",
                extra={"kind": self.kind, "user": job.user_id},
            )
            return None
        except ConnectionRevokedError:
            logger.info(
                "sync job ends: the connection was revoked while it ran",
                extra={"kind": self.kind, "user": job.user_id},
            )
            return None
        self._finish(job, connection, stats)
        return stats

    def _sync_with_token(self, job: JobT, connection: Connection, slots: int) -> StatsT:
        token = self._connections.access_token(connection)
        try:
            return self._sync(job, connection, token, slots)
        except AccessTokenRejectedError:
            # Graph refused a token MSAL still thought valid (revoked, or clocks disagree):
            # get a new one from the refresh token once, then carry on from the checkpoint.
            token = self._connections.access_token(connection, force_refresh=True)
            return self._sync(job, connection, token, slots)

    def _sync(self, job: JobT, connection: Connection, token: str, slots: int) -> StatsT:
        """Run the kind's round with ``slots`` Graph request slots held for the mailbox."""
        raise NotImplementedError

    def _continuation(self, job: JobT, stats: StatsT) -> JobT:
        """Return the job that continues an incomplete round; a kind may note its progress."""
        return job

    def _require_connected(self, connection: Connection) -> None:
        """Stop the job before it stores another page once the user revoked the connection.

        Raises:
            ConnectionRevokedError: when the connection is revoked.
        """
        current = self._connections.get(connection.tenant_id, connection.user_id, self.kind)
        if current is not None and current.state == REVOKED:
            msg = "connection revoked while its job ran"
            raise ConnectionRevokedError(msg)

    def _finish(self, job: JobT, connection: Connection, stats: StatsT) -> None:
        """Record a complete round, or send the job again to continue an incomplete one."""
        if stats.complete:
            slot = job.slot if job.slot and job.slot <= datetime.now(UTC) + MAX_SLOT_AHEAD else None
            self._connections.record_round(connection, stats.as_record(), slot=slot)
        else:
            self._queue.send(self.queue_name, self._continuation(job, stats).as_message())
        logger.info(
            "sync job done",
            extra={"kind": self.kind, "tenant": job.tenant_id, "user": job.user_id}
            | {_snake(k): v for k, v in stats.as_record().items() if isinstance(v, int | bool)},
        )

    def _requeue(self, job: JobT, delay_s: int, reason: str) -> None:
        delay_s = min(max(delay_s, 0), MAX_REQUEUE_DELAY_S)
        self._queue.send(self.queue_name, job.as_message(), delay_s=delay_s)
        logger.info(
            "sync job re-queued",
            extra={"kind": self.kind, "user": job.user_id, "delay_s": delay_s, "reason": reason},
        )

    def _index(self, tenant_id: str) -> CompanyIndex:
        """Return the tenant's company index, built at most once a minute per worker.

        The cache is shared by the jobs a worker runs at once, so it is read and filled under a
        lock; a job that finds it stale builds the index while holding it, once for all.
        """
        with self._indexes_lock:
            cached = self._indexes.get(tenant_id)
            if cached and time.monotonic() - cached[0] < INDEX_TTL_S:
                return cached[1]
            tenant = self._directory.get_tenant(tenant_id)
            own = tenant.own_domains if tenant else ()
            companies: list[CompanyMatchData] = self._directory.company_match_data(tenant_id)
            index = CompanyIndex.build(companies, own)
            self._indexes[tenant_id] = (time.monotonic(), index)
            return index

    def _backfill_start(self, tenant_id: str) -> datetime:
        tenant = self._directory.get_tenant(tenant_id)
        days = tenant.backfill_days if tenant else DEFAULT_BACKFILL_DAYS
        return datetime.now(UTC) - timedelta(days=days)


ItemT = TypeVar("ItemT", bound="Mapping[str, Any]")


def distinct_items(items: Sequence[ItemT]) -> list[ItemT]:
    """Return a delta page's items with each id once, where it was listed last.

    Graph has been seen to list one item twice in a page (microsoft-graph-docs#3611); the last
    listing is the newest state. Items without an id are all kept.
    """
    last = {str(item["id"]): position for position, item in enumerate(items) if item.get("id")}
    return [
        item
        for position, item in enumerate(items)
        if not item.get("id") or last[str(item["id"])] == position
    ]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant(value: Any) -> datetime:
    """Read an ISO 8601 time from Graph or a stored row as an aware instant.

    A naive time is taken as UTC; a missing or malformed one, or one UTC cannot hold (year 1 at
    +01:00), reads as the epoch, which is older than anything, so a purge watermark never lets
    it through by mistake. The result is in UTC, so comparing it can never overflow.
    """
    if not isinstance(value, str) or not value:
        return EPOCH
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return EPOCH


def last_slot(connection: Connection, now: datetime) -> datetime:
    """Return the slot whose round the connection last completed; the epoch when none is known.

    A slot more than one period ahead of ``now`` (recorded from a job of a fast-clock timer, or
    one sent by hand) counts as none, so it can never hold later rounds back.
    """
    try:
        slot = parse_slot(connection.last_slot) if connection.last_slot else EPOCH
    except InvalidJobError:
        return EPOCH
    return EPOCH if slot > now + MAX_SLOT_AHEAD else slot


def purged_before(connection: Connection) -> datetime:
    """Return when the user last purged the connection's data; the epoch when never."""
    return instant(connection.purged_before)
