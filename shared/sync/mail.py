"""The mail sync worker: one job syncs one connection's chosen folders through Graph delta.

Per folder, the stored cursor is followed (a ``nextLink`` left by an interrupted round first,
else the last ``deltaLink``), or a first round starts with the tenant's backfill window. Each
page's kept messages are stored before the cursor moves past them, so a worker killed after any
page resumes there. A job that has read its page budget re-queues itself to continue; a job
throttled for longer than it should wait re-queues itself with a visibility delay.

Known limitations: ``@removed`` entries are counted but do not yet remove anything from the
product; moved and deleted messages stay stored with their last known folder.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import MAIL_SYNC_QUEUE
from shared.adapters.tablelimits import table_key
from shared.errors import (
    AccessTokenRejectedError,
    ConflictError,
    DeltaCursorExpiredError,
    InvalidJobError,
    ReauthRequiredError,
    StorageLimitError,
    SyncError,
    ThrottledError,
)
from shared.matching.addresses import message_participants
from shared.matching.companies import CompanyIndex, CompanyMatchData, classify
from shared.sync.connections import DUE_STATES, MAIL, REAUTH_REQUIRED, Connection, Folder
from shared.sync.leases import MailboxGate
from shared.sync.removals import RemovalLedger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.adapters.graph import DeltaPage, GraphMailClient
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.sync.connections import ConnectionStore
    from shared.sync.store import EmailStore

logger = logging.getLogger(__name__)

CURSORS = "cursors"
PAGE_BUDGET = 200
INDEX_TTL_S = 60.0
DEFAULT_BACKFILL_DAYS = 360
DROP_DRAFT = "draft"
DROP_UNSTORABLE = "unstorable"
_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
RESET_BACKOFF_S = 300
RESET_BACKOFF_CODE = "delta_reset_backoff"


@dataclass(slots=True)
class RoundStats:
    """What one job saw and did; summed into the connection's last-round record."""

    seen: int = 0
    kept: int = 0
    stored_new: int = 0
    removed_seen: int = 0
    unlinked: int = 0
    pages: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    complete: bool = True

    def as_record(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        return {
            "seen": self.seen,
            "kept": self.kept,
            "storedNew": self.stored_new,
            "removedSeen": self.removed_seen,
            "unlinked": self.unlinked,
            "pages": self.pages,
            "dropped": dict(self.dropped),
            "complete": self.complete,
        }


class CursorTakenError(SyncError):
    """Raised when another job moved a folder's cursor first; this job's work is not needed."""


@dataclass(slots=True)
class _Round:
    """What one job works with while it walks a connection's folders."""

    connection: Connection
    token: str
    index: CompanyIndex
    since: datetime
    pending: set[str]
    stats: RoundStats = field(default_factory=RoundStats)


@dataclass(frozen=True, slots=True)
class MailJob:
    """A mail sync job as it travels on the queue."""

    tenant_id: str
    user_id: str

    @classmethod
    def parse(cls, job: Mapping[str, Any]) -> MailJob:
        """Read a job from its queue JSON.

        Raises:
            InvalidJobError: when the job lacks its tenant or user.
        """
        tenant, user = job.get("tenant"), job.get("user")
        if job.get("kind") != MAIL or not _is_id(tenant) or not _is_id(user):
            msg = "mail job needs kind 'mail' and tenant and user ids (letters, digits, hyphens)"
            raise InvalidJobError(msg)
        return cls(str(tenant), str(user))

    def as_message(self) -> dict[str, Any]:
        """Return the job as queue JSON."""
        return {"kind": MAIL, "tenant": self.tenant_id, "user": self.user_id}


def _is_id(value: Any) -> bool:
    """Tell whether a job field is an id as Entra issues them (GUIDs), safe to log and key by."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


class MailSyncService:
    """Runs mail sync jobs."""

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        graph: GraphMailClient,
        directory: DirectoryService,
        emails: EmailStore,
        queue: JobQueue,
        tables: TableEntityStore,
        page_budget: int = PAGE_BUDGET,
        gate: MailboxGate | None = None,
    ) -> None:
        self._connections = connections
        self._graph = graph
        self._directory = directory
        self._emails = emails
        self._queue = queue
        self._tables = tables
        self._page_budget = page_budget
        self._removals = RemovalLedger(tables, emails, graph)
        self._indexes: dict[str, tuple[float, CompanyIndex]] = {}
        self._gate = gate or MailboxGate(tables, queue)

    def run(self, raw_job: Mapping[str, Any]) -> RoundStats | None:
        """Sync one connection; return its stats, or ``None`` when the job ended early.

        The job holds its connection and one of the mailbox's Graph request slots while it runs
        (see :mod:`shared.sync.leases`); when either is busy it re-queues itself or, if another
        job already waits for the connection, ends as a no-op. A connection in ``error`` is
        synced like an active one, so it heals on the next slot.
        """
        job = MailJob.parse(raw_job)
        if not self._due(job):
            return None
        with self._gate.admit(job.tenant_id, job.user_id, MAIL, MAIL_SYNC_QUEUE, raw_job) as ready:
            # Read again once admitted: the job that held the connection may have changed it.
            connection = self._connections.get(job.tenant_id, job.user_id, MAIL) if ready else None
            if connection is None or connection.state not in DUE_STATES:
                logger.info(
                    "mail job skipped: connection busy or not due",
                    extra={"tenant": job.tenant_id, "user": job.user_id, "admitted": ready},
                )
                return None
            return self._run_admitted(job, connection)

    def _due(self, job: MailJob) -> bool:
        connection = self._connections.get(job.tenant_id, job.user_id, MAIL)
        if connection is not None and connection.state in DUE_STATES:
            return True
        logger.info(
            "mail job skipped: connection not due",
            extra={"tenant": job.tenant_id, "user": job.user_id},
        )
        return False

    def _run_admitted(self, job: MailJob, connection: Connection) -> RoundStats | None:
        try:
            stats = self._sync_with_token(connection)
        except ReauthRequiredError as error:
            self._connections.record_error(connection, error.code, state=REAUTH_REQUIRED)
            logger.warning(
                "mail connection needs consent again",
                extra={"user": job.user_id, "code": error.code},
            )
            return None
        except ThrottledError as error:
            self._requeue(job, int(error.retry_after_s) + 1, "throttled")
            return None
        except DeltaCursorExpiredError:
            self._connections.record_error(connection, RESET_BACKOFF_CODE)
            self._requeue(job, RESET_BACKOFF_S, RESET_BACKOFF_CODE)
            return None
        except CursorTakenError:
            logger.info("mail job ends: another job moved the cursor", extra={"user": job.user_id})
            return None
        self._finish(job, connection, stats)
        return stats

    def _sync_with_token(self, connection: Connection) -> RoundStats:
        token = self._connections.access_token(connection)
        try:
            return self._sync(connection, token)
        except AccessTokenRejectedError:
            # Graph refused a token MSAL still thought valid (revoked, or clocks disagree):
            # get a new one from the refresh token once, then carry on from the checkpoint.
            token = self._connections.access_token(connection, force_refresh=True)
            return self._sync(connection, token)

    def _requeue(self, job: MailJob, delay_s: int, reason: str) -> None:
        self._queue.send(MAIL_SYNC_QUEUE, job.as_message(), delay_s=delay_s)
        logger.info(
            "mail job re-queued", extra={"user": job.user_id, "delay_s": delay_s, "reason": reason}
        )

    def _sync(self, connection: Connection, token: str) -> RoundStats:
        work = _Round(
            connection=connection,
            token=token,
            index=self._index(connection.tenant_id),
            since=self._backfill_start(connection.tenant_id),
            pending=self._removals.pending(connection),
        )
        for folder in connection.folders:
            if not self._sync_folder(work, folder):
                work.stats.complete = False
                return work.stats
        resolved = self._removals.resolve(connection, token)
        work.stats.unlinked = resolved.unlinked
        return work.stats

    def _finish(self, job: MailJob, connection: Connection, stats: RoundStats) -> None:
        if stats.complete:
            self._connections.record_round(connection, stats.as_record())
        else:
            self._queue.send(MAIL_SYNC_QUEUE, job.as_message())
        logger.info(
            "mail job done",
            extra={
                "tenant": job.tenant_id,
                "user": job.user_id,
                "seen": stats.seen,
                "kept": stats.kept,
                "stored_new": stats.stored_new,
                "pages": stats.pages,
                "complete": stats.complete,
            },
        )

    def _sync_folder(self, work: _Round, folder: Folder) -> bool:
        """Sync one folder; False when the page budget ran out before the round ended."""
        connection = work.connection
        for attempt in (1, 2):
            cursor = self._tables.get(CURSORS, connection.key, table_key(folder.folder_id))
            try:
                return self._follow(work, folder, cursor)
            except DeltaCursorExpiredError:
                logger.warning(
                    "delta cursor expired, folder resyncs",
                    extra={"user": connection.user_id, "attempt": attempt},
                )
                self._reset_cursor(connection, folder)
        message = "delta cursor expired twice in one job; the job backs off"
        raise DeltaCursorExpiredError(message)

    def _follow(self, work: _Round, folder: Folder, cursor: Entity | None) -> bool:
        resume = None
        if cursor:
            resume = cursor.get("nextLink") or cursor.get("deltaLink") or None
        pages = self._graph.delta_pages(
            work.token, folder.folder_id, resume_url=resume, since=work.since
        )
        for page in pages:
            self._store_page(work, page)
            cursor = self._save_cursor(work.connection, folder, cursor, page)
            work.stats.pages += 1
            if page.next_link and work.stats.pages >= self._page_budget:
                return False
        return True

    def _store_page(self, work: _Round, page: DeltaPage) -> None:
        connection, index, stats, pending = work.connection, work.index, work.stats, work.pending
        for item in page.items:
            item_id = str(item.get("id", ""))
            if "@removed" in item:
                stats.removed_seen += 1
                self._removals.note_removed(connection, item_id, pending)
                continue
            self._removals.note_present(connection, item_id, pending)
            stats.seen += 1
            if item.get("isDraft"):
                stats.dropped[DROP_DRAFT] += 1
                continue
            participants = message_participants(item)
            decision = classify(participants, index)
            if not decision.keep:
                stats.dropped[decision.reason] += 1
                continue
            try:
                created = self._emails.save(
                    tenant_id=connection.tenant_id,
                    user_id=connection.user_id,
                    connection=connection.key,
                    message=item,
                    participants=participants,
                    company_ids=decision.company_ids,
                )
            except StorageLimitError:
                # One message the store cannot hold must never block the whole mailbox.
                logger.warning("message not storable, dropped", extra={"user": connection.user_id})
                stats.dropped[DROP_UNSTORABLE] += 1
                continue
            stats.kept += 1
            stats.stored_new += int(created)

    def _save_cursor(
        self, connection: Connection, folder: Folder, cursor: Entity | None, page: DeltaPage
    ) -> Entity:
        previous_delta = (cursor or {}).get("deltaLink", "")
        row: Entity = {
            "PartitionKey": connection.key,
            "RowKey": table_key(folder.folder_id),
            "folderId": folder.folder_id,
            "nextLink": page.next_link or "",
            "deltaLink": page.delta_link or previous_delta,
            "updatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            etag = self._tables.update(CURSORS, row, etag=(cursor or {}).get("_etag"))
        except ConflictError as error:
            message = "another worker moved this folder's cursor; this job stops"
            raise CursorTakenError(message) from error
        return {**row, "_etag": etag}

    def _reset_cursor(self, connection: Connection, folder: Folder) -> None:
        self._tables.delete(CURSORS, connection.key, table_key(folder.folder_id))

    def _index(self, tenant_id: str) -> CompanyIndex:
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
