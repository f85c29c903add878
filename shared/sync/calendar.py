"""The calendar sync worker: one job syncs one connection's primary calendar through Graph.

A round is a ``calendarView/delta`` round over a window from the tenant's backfill start to one
year ahead. Graph fixes the window for the life of the delta link, so when the window wanted now
has moved :data:`WINDOW_DRIFT` or more past the stored one, the next round starts afresh over
the new window. Such a full round (the first one, a moved window, or a reset after 410) ends by
removing from this calendar every stored item inside the window that the round did not see. A
reset keeps the stored window's start when it is earlier than the one wanted now, so a change
made there since the last round is not skipped because the window moved meanwhile.
What happens to each item of a page (series, occurrences, removals, drops) and at the end of a
round is :mod:`shared.sync.eventkeeper`'s work; the job and its stats are in
:mod:`shared.sync.calendarjob`.

Progress is checkpointed per page as in mail; the cursor row is written conditionally on its
ETag, so two jobs never interleave a round.

Before each page the job reads its connection again: once it was revoked the job stores nothing
more, and a purge started meanwhile applies to the pages that follow.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import CALENDAR_SYNC_QUEUE
from shared.errors import ConflictError, DeltaCursorExpiredError
from shared.rules.store import EVENT_RECORDS, DecisionLog, RuleStore
from shared.sync.calendarjob import CalendarJob, CalendarRound, CalendarStats
from shared.sync.connections import CALENDAR, Connection
from shared.sync.eventkeeper import DROP_UNREADABLE, EventKeeper
from shared.sync.eventrules import event_rules
from shared.sync.jobs import ConnectionSyncRunner, CursorTakenError, distinct_items

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from shared.adapters.graph import DeltaPage
    from shared.adapters.graphcalendar import GraphCalendarClient
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.matching.companies import CompanyIndex
    from shared.rules.engine import CompiledRules
    from shared.sync.connectionstore import ConnectionStore
    from shared.sync.eventstore import EventStore
    from shared.sync.leases import MailboxGate

logger = logging.getLogger(__name__)

CURSORS = "cursors"
CURSOR_ROW = "calendarView"
PAGE_BUDGET = 200
WINDOW_AHEAD = timedelta(days=365)
WINDOW_DRIFT = timedelta(days=7)


class CalendarSyncService(ConnectionSyncRunner[CalendarJob, CalendarStats]):
    """Runs calendar sync jobs."""

    job_type = CalendarJob
    kind = CALENDAR
    queue_name = CALENDAR_SYNC_QUEUE

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        graph: GraphCalendarClient,
        directory: DirectoryService,
        events: EventStore,
        queue: JobQueue,
        tables: TableEntityStore,
        page_budget: int = PAGE_BUDGET,
        gate: MailboxGate | None = None,
        clock: Callable[[], datetime] | None = None,
        rules: RuleStore | None = None,
    ) -> None:
        super().__init__(
            connections=connections, directory=directory, queue=queue, tables=tables, gate=gate
        )
        self._graph = graph
        self._page_budget = page_budget
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rules = rules or RuleStore(tables)
        decisions = DecisionLog(tables, self._rules, EVENT_RECORDS)
        self._keeper = EventKeeper(graph=graph, events=events, decisions=decisions)

    def _sync(
        self, job: CalendarJob, connection: Connection, token: str, slots: int
    ) -> CalendarStats:
        for attempt in (1, 2):
            work = self._plan(connection, token)
            try:
                return self._follow(work)
            except DeltaCursorExpiredError:
                logger.warning(
                    "calendar delta link expired, the window resyncs",
                    extra={"user": connection.user_id, "attempt": attempt},
                )
                self._reset_cursor(work)
        message = "calendar delta link expired twice in one job; the job backs off"
        raise DeltaCursorExpiredError(message)

    def _reset_cursor(self, work: CalendarRound) -> None:
        """Forget the cursor's links as this job last saw them, unless another job moved them.

        The row keeps the window its rounds covered, so the full round that follows starts no
        later than that window did (see :meth:`_plan`).

        Raises:
            CursorTakenError: when another job wrote the cursor after this one read it.
        """
        if work.cursor is None:
            return
        row: Entity = {
            "PartitionKey": work.connection.key,
            "RowKey": CURSOR_ROW,
            "nextLink": "",
            "deltaLink": "",
            "windowStart": str(work.cursor.get("windowStart") or _stamp(work.window[0])),
            "windowEnd": str(work.cursor.get("windowEnd") or _stamp(work.window[1])),
            "roundId": str(work.cursor.get("roundId") or ""),
            "fullRound": True,
            "updatedAt": _stamp(datetime.now(UTC)),
        }
        try:
            self._tables.update(CURSORS, row, etag=work.cursor.get("_etag"))
        except ConflictError as error:
            message = "another worker moved this calendar's cursor; this job stops"
            raise CursorTakenError(message) from error

    def window(self, tenant_id: str) -> tuple[datetime, datetime]:
        """Return the window wanted now: backfill start (midnight UTC) to a year ahead."""
        days = self._backfill_days(tenant_id)
        today = datetime.combine(self._clock().astimezone(UTC).date(), time(0), tzinfo=UTC)
        return today - timedelta(days=days), today + WINDOW_AHEAD

    def _plan(self, connection: Connection, token: str) -> CalendarRound:
        cursor = self._tables.get(CURSORS, connection.key, CURSOR_ROW)
        wanted = self.window(connection.tenant_id)
        index = self._index(connection.tenant_id)
        # Compiled once per job: every event of every page is checked against the same set.
        rules = self._compiled_rules(connection)
        if cursor and cursor.get("nextLink"):
            stored = (_moment(cursor["windowStart"]), _moment(cursor["windowEnd"]))
            full = bool(cursor.get("fullRound"))
            round_id = str(cursor["roundId"])
            resume = cursor["nextLink"]
            return CalendarRound(
                connection, token, index, stored, round_id, full, resume, cursor, rules
            )
        if cursor and cursor.get("deltaLink") and not _drifted(cursor, wanted):
            stored = (_moment(cursor["windowStart"]), _moment(cursor["windowEnd"]))
            round_id, resume = uuid.uuid4().hex, cursor["deltaLink"]
            return CalendarRound(
                connection, token, index, stored, round_id, False, resume, cursor, rules
            )
        if cursor and not cursor.get("deltaLink"):
            # A reset: the full round starts no later than the window the lost links covered,
            # so changes made there since the last round are read however the window moved.
            wanted = (min(wanted[0], _stored_start(cursor, wanted[0])), wanted[1])
        round_id = uuid.uuid4().hex
        return CalendarRound(connection, token, index, wanted, round_id, True, None, cursor, rules)

    def _compiled_rules(self, connection: Connection) -> CompiledRules:
        return event_rules(self._rules.ruleset(connection.tenant_id, connection.user_id))

    def _follow(self, work: CalendarRound) -> CalendarStats:
        work.stats.full_round = work.full
        pages = self._graph.delta_pages(work.token, resume_url=work.resume, window=work.window)
        for page in pages:
            work.connection = self._still_connected(work.connection)
            if page.unreadable:
                work.stats.dropped[DROP_UNREADABLE] += page.unreadable
            for item in distinct_items(page.items):
                self._keeper.handle(work, item)
            if page.delta_link:
                self._keeper.end_round(work)
            self._keeper.record_drops(work)
            self._save_cursor(work, page)
            work.stats.pages += 1
            if page.next_link and work.stats.pages >= self._page_budget:
                work.stats.complete = False
                return work.stats
        return work.stats

    def _still_connected(self, connection: Connection) -> Connection:
        """Return the connection as stored now, to see a purge started while the job runs.

        Raises:
            ConnectionRevokedError: when the user revoked the connection meanwhile.
        """
        self._require_connected(connection)
        current = self._connections.get(connection.tenant_id, connection.user_id, CALENDAR)
        return current or connection

    def company_index(self, tenant_id: str) -> CompanyIndex:
        """Return the tenant's company index, as the worker matches events with it."""
        return self._index(tenant_id)

    def keep_created(
        self, connection: Connection, token: str, event: Mapping[str, Any]
    ) -> str | None:
        """Store an event just created in a calendar as sync will store it; return its key."""
        tenant = connection.tenant_id
        index, window = self._index(tenant), self.window(tenant)
        rules = self._compiled_rules(connection)
        work = CalendarRound(connection, token, index, window, "created", False, None, None, rules)
        key = self._keeper.keep(work, event, str(event.get("type") or "singleInstance"), None)
        self._keeper.record_drops(work)
        return key

    def _save_cursor(self, work: CalendarRound, page: DeltaPage) -> None:
        previous = work.cursor or {}
        start, end = work.window
        row: Entity = {
            "PartitionKey": work.connection.key,
            "RowKey": CURSOR_ROW,
            "nextLink": page.next_link or "",
            "deltaLink": page.delta_link or ("" if work.full else previous.get("deltaLink", "")),
            "windowStart": _stamp(start),
            "windowEnd": _stamp(end),
            "roundId": work.round_id,
            "fullRound": work.full,
            "updatedAt": _stamp(datetime.now(UTC)),
        }
        try:
            etag = self._tables.update(CURSORS, row, etag=previous.get("_etag"))
        except ConflictError as error:
            message = "another worker moved this calendar's cursor; this job stops"
            raise CursorTakenError(message) from error
        work.cursor = {**row, "_etag": etag}

    def _backfill_days(self, tenant_id: str) -> int:
        tenant = self._directory.get_tenant(tenant_id)
        return tenant.backfill_days if tenant else 360


def _drifted(cursor: Mapping[str, Any], wanted: tuple[datetime, datetime]) -> bool:
    try:
        stored = _moment(str(cursor.get("windowStart", "")))
    except ValueError:
        return True
    return abs(wanted[0] - stored) >= WINDOW_DRIFT


def _stored_start(cursor: Mapping[str, Any], default: datetime) -> datetime:
    try:
        return _moment(str(cursor.get("windowStart") or ""))
    except ValueError:
        return default


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
