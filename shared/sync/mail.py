"""The mail sync worker: one job syncs one connection's chosen folders through Graph delta.

A connection with no folder chosen (consent stored its grant but Graph failed the lookup of
the default folders) gets Inbox and Sent Items chosen by its first job. Per folder, the stored
cursor is followed (a ``nextLink`` left by an interrupted round first, else the last
``deltaLink``), or a first round starts with the tenant's backfill window. Each
page's kept messages are stored before the cursor moves past them, so a worker killed after any
page resumes there. A job syncs as many folders at once as it holds request slots (up to 3),
and reads each folder's next page while it stores the current one (see
:mod:`shared.sync.folderwalk`); each folder thread counts into its own :class:`RoundStats`, added
up when the folders end. A job that has read its page budget re-queues itself to continue,
naming the folders its round finished so they are not read again (:class:`MailJob`); a job
throttled for longer than it should wait re-queues itself with a visibility delay. A failure in
one folder stops the others at their next page and ends the job as it would have alone.

A page's kept messages are saved together (:meth:`EmailStore.save_page`): one query for the
item tombstones of the page, one transaction for its mailbox items and one per index partition
its rows share.

Each message is decided by :func:`shared.rules.decide.decide` before anything is written: the
company match, the tenant's switches and the tenant's and user's blocking rules, compiled once
per job. A dropped message leaves only a decision record (keyed hashes of its ids, the reason
code or rule id, the time; see :mod:`shared.rules.store`).

One message never blocks its mailbox: an entry of a page without an id, or one whose fields
have shapes the decision cannot read, is dropped as ``unreadable``, and one the store cannot
hold as ``unstorable``; both are counted, the rest of the page is stored and the cursor moves on.
An entry without an id has no decision record, since there is nothing to key it by.

A message deleted in the product (power tools) carries a tombstone and is dropped as
``deleted``; after a purge of the mailbox, messages received before it are dropped as
``purged``, so neither comes back through a later delta or cursor reset. A folder whose cursor
Graph forgot starts its fresh round no later than its last complete round (less a margin) and
never before the purge (see :mod:`shared.sync.resync`): the cursor row keeps when its rounds
began and ended, and a reset clears only its links. The job checks before each page that the
connection was not revoked meanwhile, and stores nothing more if it was.

``@removed`` entries are noted and settled at the end of a complete round (see
:mod:`shared.sync.removals`); so are the stored items of a folder that a round begun without a
link (a first round, or one after a reset) did not save again.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import MAIL_SYNC_QUEUE
from shared.adapters.tablelimits import table_key
from shared.errors import ConflictError, DeltaCursorExpiredError, NotFoundError
from shared.rules.decide import decide
from shared.rules.engine import CompiledRules
from shared.rules.store import DecisionLog, Drop, RuleStore
from shared.sync.connections import MAIL, Connection, Folder
from shared.sync.defaultfolders import look_up_default_folders
from shared.sync.emailrows import internet_message_id, message_item_id
from shared.sync.folderwalk import PageBudget, prefetched, walk
from shared.sync.jobs import (
    DEFAULT_BACKFILL_DAYS,
    EPOCH,
    INDEX_TTL_S,
    RESET_BACKOFF_CODE,
    RESET_BACKOFF_S,
    ConnectionSyncRunner,
    CursorTakenError,
    distinct_items,
    instant,
    purged_before,
)
from shared.sync.leases import MAIL_SLOTS
from shared.sync.mailjob import MailJob, RoundStats, continued_folders
from shared.sync.removals import PendingRemovals, RemovalLedger
from shared.sync.resync import fresh_since, reset_marks, round_marks, stamp
from shared.sync.store import EmailDeletedError, KeptMessage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.adapters.graph import DeltaPage, GraphMailClient
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.matching.companies import CompanyIndex
    from shared.sync.connectionstore import ConnectionStore
    from shared.sync.leases import MailboxGate
    from shared.sync.store import EmailStore

__all__ = [
    "CURSORS",
    "DEFAULT_BACKFILL_DAYS",
    "DROP_DRAFT",
    "DROP_UNREADABLE",
    "DROP_UNSTORABLE",
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
DROP_UNREADABLE = "unreadable"
DROP_DELETED = "deleted"
DROP_PURGED = "purged"


@dataclass(slots=True)
class _Round:
    """What one job's folder threads share; each part is read-only or guards itself."""

    connection: Connection
    token: str
    index: CompanyIndex
    backfill_start: datetime
    pending: PendingRemovals
    rules: CompiledRules
    budget: PageBudget


@dataclass(slots=True)
class _CursorRow:
    """A folder's cursor row as this job last read or wrote it (with its ETag), or None."""

    row: Entity | None


class MailSyncService(ConnectionSyncRunner[MailJob, RoundStats]):
    """Runs mail sync jobs: each chosen folder's delta round, then the round's removals."""

    job_type = MailJob
    kind = MAIL
    queue_name = MAIL_SYNC_QUEUE
    request_slots = MAIL_SLOTS

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
        rules: RuleStore | None = None,
    ) -> None:
        super().__init__(
            connections=connections, directory=directory, queue=queue, tables=tables, gate=gate
        )
        self._graph = graph
        self._emails = emails
        self._page_budget = page_budget
        self._removals = RemovalLedger(tables, emails, graph)
        self._rules = rules or RuleStore(tables)
        self._decisions = DecisionLog(tables, self._rules)

    def _sync(self, job: MailJob, connection: Connection, token: str, slots: int) -> RoundStats:
        if not connection.folders:
            # Consent stores the grant before it looks the default folders up; when Graph failed
            # that lookup, no folder was chosen yet, and syncing none would say nothing.
            folders = look_up_default_folders(self._graph, token)
            connection = self._connections.set_folders(connection, folders)
        work = _Round(
            connection=connection,
            token=token,
            index=self._index(connection.tenant_id),
            backfill_start=self._backfill_start(connection.tenant_id),
            pending=self._removals.pending(connection),
            # Compiled once per job: every message of every page is checked against the same set.
            rules=CompiledRules(self._rules.ruleset(connection.tenant_id, connection.user_id)),
            budget=PageBudget(self._page_budget),
        )
        todo = [folder for folder in connection.folders if folder.folder_id not in job.done]
        parts = walk(todo, slots, work.budget, functools.partial(self._sync_folder, work))
        # A folder the user unselected since the round began is no longer part of it: the
        # continuation carries only chosen folders, so ``done`` stays within its limit.
        chosen = {folder.folder_id for folder in connection.folders}
        stats = RoundStats(finished=[folder for folder in job.done if folder in chosen])
        for folder, (done, part) in zip(todo, parts, strict=True):
            stats.add(part)
            if done:
                stats.finished.append(folder.folder_id)
        stats.complete = all(done for done, _ in parts)
        if stats.complete:
            stats.unlinked = self._removals.resolve(connection, token).unlinked
        return stats

    def _continuation(self, job: MailJob, stats: RoundStats) -> MailJob:
        return replace(job, done=continued_folders(stats.finished))

    def _sync_folder(self, work: _Round, folder: Folder) -> tuple[bool, RoundStats]:
        """Sync one folder; return whether its round ended (not cut by the budget) and counts."""
        connection, stats = work.connection, RoundStats()
        for attempt in (1, 2):
            cursor = _CursorRow(
                self._tables.get(CURSORS, connection.key, table_key(folder.folder_id))
            )
            try:
                return self._follow(work, folder, cursor, stats), stats
            except NotFoundError:
                # The folder was deleted in Outlook: the others sync on, and the round counts
                # it so that its user can see it and choose their folders again.
                logger.warning("synced folder no longer exists", extra={"user": connection.user_id})
                stats.missing_folders += 1
                # Its mail went with it or moved: each stored item is looked up at the round's
                # end, so what Graph no longer has goes and what moved stays.
                self._removals.note_unseen(
                    connection,
                    folder.folder_id,
                    work.pending,
                    started=datetime.now(UTC),
                    since=EPOCH,
                )
                return True, stats
            except DeltaCursorExpiredError:
                logger.warning(
                    "delta cursor expired, folder resyncs",
                    extra={"user": connection.user_id, "attempt": attempt},
                )
                self._reset_cursor(connection, folder, cursor.row)
        message = "delta cursor expired twice in one job; the job backs off"
        raise DeltaCursorExpiredError(message)

    def _follow(self, work: _Round, folder: Folder, cursor: _CursorRow, stats: RoundStats) -> bool:
        row = cursor.row or {}
        resume = row.get("nextLink") or row.get("deltaLink") or None
        # A round that begins now notes when (and, without a link, from when) it reads, so a
        # later reset knows which mail every ended round has listed (see shared.sync.resync).
        since = None if resume else self._fresh_since(work, cursor.row)
        started = None if row.get("nextLink") else datetime.now(UTC)
        pages = self._graph.delta_pages(
            work.token, folder.folder_id, resume_url=resume, since=since
        )
        ended = False
        for page in prefetched(pages, work.budget):
            if work.budget.stopped:
                # Another folder failed: the job ends, and this page is read again next time.
                return False
            self._require_connected(work.connection)
            stats.add(self._store_page(work, page))
            marks = round_marks(cursor.row, started=started, since=since, ended=not page.next_link)
            if not page.next_link and marks["roundFresh"]:
                self._note_unseen(work, folder, marks)
            # The cursor moves only once the page's items are stored: a killed job resumes here.
            cursor.row = self._save_cursor(work.connection, folder, cursor.row, page, marks)
            started = since = None
            stats.pages += 1
            ended = page.next_link is None
        return ended

    def _note_unseen(self, work: _Round, folder: Folder, marks: dict[str, str]) -> None:
        """End a round begun without a link: what it did not save again is checked as removed."""
        started, since = instant(marks["roundStartedAt"]), instant(marks["roundSince"])
        self._removals.note_unseen(
            work.connection, folder.folder_id, work.pending, started=started, since=since
        )

    def _fresh_since(self, work: _Round, row: Entity | None) -> datetime:
        purged = purged_before(work.connection)
        return fresh_since(row, backfill_start=work.backfill_start, purged_before=purged)

    def _store_page(self, work: _Round, page: DeltaPage) -> RoundStats:
        """Store a page's kept messages and note its removals; return the page's counts."""
        connection, stats = work.connection, RoundStats()
        drops: list[Drop] = []
        kept: list[KeptMessage] = []
        items = [item for item in page.items if message_item_id(item)]
        # An entry without an id can be neither stored nor removed: it is counted, not recorded.
        unreadable = page.unreadable + len(page.items) - len(items)
        if unreadable:
            stats.dropped[DROP_UNREADABLE] += unreadable
        for item in distinct_items(items):
            item_id = message_item_id(item)
            if "@removed" in item:
                stats.removed_seen += 1
                self._removals.note_removed(connection, item_id, work.pending)
                continue
            self._removals.note_present(connection, item_id, work.pending)
            stats.seen += 1
            decided = self._decide(work, item)
            if isinstance(decided, Drop):
                drops.append(decided)
            else:
                kept.append(decided)
        drops.extend(self._save_kept(connection, kept, stats))
        stats.dropped.update(drop.reason for drop in drops)
        # Only a keyed hash of each dropped message's ids, the reason and the time are written.
        self._decisions.record(connection.tenant_id, connection.user_id, drops)
        return stats

    def _decide(self, work: _Round, item: dict[str, Any]) -> KeptMessage | Drop:
        """Return a message to keep, or why it is dropped, before anything is written."""
        item_id, internet_id = message_item_id(item), internet_message_id(item)
        if item.get("isDraft") is True:
            return Drop(item_id, internet_id, DROP_DRAFT)
        if _received(item) < purged_before(work.connection):
            return Drop(item_id, internet_id, DROP_PURGED)
        thread = functools.partial(self._thread_companies, work.connection.tenant_id)
        try:
            outcome = decide(item, work.index, work.rules, thread=thread)
        # NOTE: one message must never block its mailbox: a field of a shape the decision does
        # not expect drops that message alone (lookups of stored emails still raise SyncErrors).
        except (TypeError, ValueError, AttributeError, KeyError):
            logger.warning("message not readable, dropped", extra={"user": work.connection.user_id})
            return Drop(item_id, internet_id, DROP_UNREADABLE)
        if not outcome.keep:
            return Drop(item_id, internet_id, outcome.reason, outcome.rule)
        return KeptMessage(item, outcome.participants, outcome.company_ids, outcome.bcc_company_ids)

    def _save_kept(
        self, connection: Connection, kept: list[KeptMessage], stats: RoundStats
    ) -> list[Drop]:
        """Store a page's kept messages together; return the ones the store refused as drops."""
        if not kept:
            return []
        outcomes = self._emails.save_page(
            tenant_id=connection.tenant_id,
            user_id=connection.user_id,
            connection=connection.key,
            kept=kept,
        )
        drops: list[Drop] = []
        for entry, outcome in zip(kept, outcomes, strict=True):
            if isinstance(outcome, bool):
                stats.kept += 1
                stats.stored_new += int(outcome)
                continue
            item_id = message_item_id(entry.message)
            internet_id = internet_message_id(entry.message)
            if isinstance(outcome, EmailDeletedError):
                drops.append(Drop(item_id, internet_id, DROP_DELETED))
                continue
            # One message the store cannot hold must never block the whole mailbox.
            logger.warning("message not storable, dropped", extra={"user": connection.user_id})
            drops.append(Drop(item_id, internet_id, DROP_UNSTORABLE))
        return drops

    def _thread_companies(self, tenant_id: str, internet_ids: list[str]) -> frozenset[str]:
        return self._emails.thread_companies(tenant_id, internet_ids)

    def _save_cursor(
        self,
        connection: Connection,
        folder: Folder,
        cursor: Entity | None,
        page: DeltaPage,
        marks: dict[str, str],
    ) -> Entity:
        previous_delta = (cursor or {}).get("deltaLink", "")
        links = {"nextLink": page.next_link or "", "deltaLink": page.delta_link or previous_delta}
        return self._write_cursor(connection, folder, cursor, links | marks)

    def _write_cursor(
        self, connection: Connection, folder: Folder, cursor: Entity | None, fields: Entity
    ) -> Entity:
        """Write a folder's cursor row unless another job wrote it since; return it with its ETag.

        Raises:
            CursorTakenError: when another job wrote the cursor after this one read it.
        """
        row: Entity = {
            "PartitionKey": connection.key,
            "RowKey": table_key(folder.folder_id),
            "folderId": folder.folder_id,
            **fields,
            "updatedAt": stamp(datetime.now(UTC)),
        }
        try:
            etag = self._tables.update(CURSORS, row, etag=(cursor or {}).get("_etag"))
        except ConflictError as error:
            message = "another worker moved this folder's cursor; this job stops"
            raise CursorTakenError(message) from error
        return {**row, "_etag": etag}

    def _reset_cursor(self, connection: Connection, folder: Folder, cursor: Entity | None) -> None:
        """Forget the folder's links as this job last saw them, unless another job moved them.

        The row keeps when its rounds began and ended, so the fresh round knows where to start.

        Raises:
            CursorTakenError: when another job wrote the cursor after this one read it; its
                cursor is newer than the link Graph refused, so this job stops.
        """
        if cursor is None:
            return
        fields = {"nextLink": "", "deltaLink": ""} | reset_marks(cursor)
        self._write_cursor(connection, folder, cursor, fields)


def _received(item: Mapping[str, Any]) -> datetime:
    """Return when the mailbox received a message; the epoch when Graph gave no valid time."""
    return instant(item.get("receivedDateTime"))
