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
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from shared.adapters.queues import MAIL_SYNC_QUEUE
from shared.adapters.tablelimits import table_key
from shared.errors import ConflictError, DeltaCursorExpiredError, StorageLimitError
from shared.matching.addresses import message_participants
from shared.matching.companies import CompanyIndex, classify
from shared.sync.connections import MAIL, Connection, Folder
from shared.sync.jobs import (
    DEFAULT_BACKFILL_DAYS,
    INDEX_TTL_S,
    RESET_BACKOFF_CODE,
    RESET_BACKOFF_S,
    ConnectionJob,
    ConnectionSyncRunner,
    CursorTakenError,
)
from shared.sync.removals import RemovalLedger

if TYPE_CHECKING:
    from shared.adapters.graph import DeltaPage, GraphMailClient
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.sync.connections import ConnectionStore
    from shared.sync.leases import MailboxGate
    from shared.sync.store import EmailStore

__all__ = [
    "CURSORS",
    "DEFAULT_BACKFILL_DAYS",
    "DROP_DRAFT",
    "INDEX_TTL_S",
    "RESET_BACKOFF_CODE",
    "RESET_BACKOFF_S",
    "CursorTakenError",
    "MailJob",
    "MailSyncService",
    "RoundStats",
]

logger = logging.getLogger(__name__)

CURSORS = "cursors"
PAGE_BUDGET = 200
DROP_DRAFT = "draft"
DROP_UNSTORABLE = "unstorable"


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
class MailJob(ConnectionJob):
    """A mail sync job as it travels on the queue."""

    KIND: ClassVar[str] = MAIL


class MailSyncService(ConnectionSyncRunner[MailJob, RoundStats]):
    """Runs mail sync jobs: each chosen folder's delta round, then the round's removals."""

    job_type = MailJob
    kind = MAIL
    queue_name = MAIL_SYNC_QUEUE

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
        super().__init__(
            connections=connections, directory=directory, queue=queue, tables=tables, gate=gate
        )
        self._graph = graph
        self._emails = emails
        self._page_budget = page_budget
        self._removals = RemovalLedger(tables, emails, graph)

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
