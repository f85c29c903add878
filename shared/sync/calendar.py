"""The calendar sync worker: one job syncs one connection's primary calendar through Graph.

A round is a ``calendarView/delta`` round over a window from the tenant's backfill start to one
year ahead. Graph fixes the window for the life of the delta link, so when the window wanted now
has moved :data:`WINDOW_DRIFT` or more past the stored one, the next round starts afresh over
the new window. Such a full round (the first one, a moved window, or a reset after 410) ends by
removing from this calendar every stored item inside the window that the round did not see, so a
new window neither duplicates (records are keyed by meeting occurrence) nor keeps what vanished
meanwhile. Items before the window's start are kept as history.

Recurrence (BR-04): a series master (legacy delta answers carry it) is remembered per calendar;
an occurrence or exception is stored under its series' ``iCalUId`` and original start, and
matched through the series' attendees when it carries none. Any change to a series seen in an
incremental round reconciles the series: ``/instances`` in the window is read, stored
occurrences missing from it are removed (a cancelled occurrence that silently vanished), the
rest are updated. ``@removed`` removes the item from this calendar; an event cancelled by its
organiser (``isCancelled``) is kept, marked cancelled, and never counts as upcoming.

Progress is checkpointed per page as in mail; the cursor row is written conditionally on its
ETag, so two jobs never interleave a round.

Power tools: an event deleted in the product carries a tombstone (by its tenant-wide key and by
each holder's item id) and is dropped as ``deleted``. After a purge of the calendar, every
event the calendar held before it is dropped as ``purged``: an event counts as held since its
``createdDateTime`` (for an occurrence, its series'; an event without one counts as always
held), so neither a later change, a moved window, a full round nor a 410 reset brings one back,
and the future occurrences of a series created before the purge stay out too; meetings that
arrive in the calendar after the purge sync as usual. Before each page the job reads its
connection again: once it was revoked the job stores nothing more, and a purge started
meanwhile applies to the pages that follow.

Blocking rules: the tenant's and the user's rules apply to each event once it matched a company
and before anything is written (see :mod:`shared.sync.eventrules`: the organiser as sender, the
attendees as recipients, the subject and body as content). A dropped event leaves only a
decision record, as a dropped message does (keyed hashes of its id and ``iCalUId``, the reason
or rule, the time), in the user's calendar partition of the decision table; one already stored
is removed from this calendar.

Known limitations: a series whose master changes outside the window is not reconciled until it
changes inside it. A rule saved later does not remove events already stored until they change
or a full round sees them again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from shared.adapters.queues import CALENDAR_SYNC_QUEUE
from shared.errors import (
    ConflictError,
    DeltaCursorExpiredError,
    NotFoundError,
    StorageLimitError,
    ValidationError,
)
from shared.matching.addresses import event_participants
from shared.matching.companies import classify
from shared.rules.store import EVENT_RECORDS, DecisionLog, Drop, RuleStore
from shared.sync.connections import CALENDAR, Connection
from shared.sync.eventrules import check_event, event_rules
from shared.sync.eventstore import EventDeletedError, KeptEvent
from shared.sync.eventtimes import event_times, occurrence_anchor
from shared.sync.jobs import (
    ConnectionJob,
    ConnectionSyncRunner,
    CursorTakenError,
    distinct_items,
    instant,
    purged_before,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from shared.adapters.graph import DeltaPage
    from shared.adapters.graphcalendar import GraphCalendarClient
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.matching.companies import CompanyIndex
    from shared.rules.engine import CompiledRules
    from shared.rules.model import Rule
    from shared.sync.connectionstore import ConnectionStore
    from shared.sync.eventstore import EventStore
    from shared.sync.leases import MailboxGate

logger = logging.getLogger(__name__)

CURSORS = "cursors"
CURSOR_ROW = "calendarView"
PAGE_BUDGET = 200
WINDOW_AHEAD = timedelta(days=365)
WINDOW_DRIFT = timedelta(days=7)
DROP_UNSTORABLE = "unstorable"
DROP_BAD_TIMES = "bad_times"
DROP_DELETED = "deleted"
DROP_PURGED = "purged"
OCCURRENCE_KINDS = frozenset({"occurrence", "exception"})


@dataclass(slots=True)
class CalendarStats:
    """What one calendar job saw and did; recorded as the connection's last round."""

    seen: int = 0
    kept: int = 0
    stored_new: int = 0
    removed_seen: int = 0
    unlinked: int = 0
    series_reconciled: int = 0
    pages: int = 0
    full_round: bool = False
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
            "seriesReconciled": self.series_reconciled,
            "pages": self.pages,
            "fullRound": self.full_round,
            "dropped": dict(self.dropped),
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True)
class CalendarJob(ConnectionJob):
    """A calendar sync job as it travels on the queue."""

    KIND: ClassVar[str] = CALENDAR


@dataclass(slots=True)
class _Round:
    """What one job works with while it walks a calendar's delta pages."""

    connection: Connection
    token: str
    index: CompanyIndex
    window: tuple[datetime, datetime]
    round_id: str
    full: bool
    resume: str | None
    cursor: Entity | None
    rules: CompiledRules
    touched: set[str] = field(default_factory=set)
    drops: list[Drop] = field(default_factory=list)
    stats: CalendarStats = field(default_factory=CalendarStats)


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
        self._events = events
        self._page_budget = page_budget
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rules = rules or RuleStore(tables)
        self._decisions = DecisionLog(tables, self._rules, EVENT_RECORDS)

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

    def _reset_cursor(self, work: _Round) -> None:
        """Forget the cursor as this job last saw it, unless another job moved it since.

        Raises:
            CursorTakenError: when another job wrote the cursor after this one read it.
        """
        if work.cursor is None:
            return
        etag = work.cursor.get("_etag")
        try:
            self._tables.delete(CURSORS, work.connection.key, CURSOR_ROW, etag=etag)
        except ConflictError as error:
            message = "another worker moved this calendar's cursor; this job stops"
            raise CursorTakenError(message) from error

    def window(self, tenant_id: str) -> tuple[datetime, datetime]:
        """Return the window wanted now: backfill start (midnight UTC) to a year ahead."""
        days = self._backfill_days(tenant_id)
        today = datetime.combine(self._clock().astimezone(UTC).date(), time(0), tzinfo=UTC)
        return today - timedelta(days=days), today + WINDOW_AHEAD

    def _plan(self, connection: Connection, token: str) -> _Round:
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
            return _Round(connection, token, index, stored, round_id, full, resume, cursor, rules)
        if cursor and cursor.get("deltaLink") and not _drifted(cursor, wanted):
            stored = (_moment(cursor["windowStart"]), _moment(cursor["windowEnd"]))
            round_id, resume = uuid.uuid4().hex, cursor["deltaLink"]
            return _Round(connection, token, index, stored, round_id, False, resume, cursor, rules)
        round_id = uuid.uuid4().hex
        return _Round(connection, token, index, wanted, round_id, True, None, cursor, rules)

    def _compiled_rules(self, connection: Connection) -> CompiledRules:
        return event_rules(self._rules.ruleset(connection.tenant_id, connection.user_id))

    def _follow(self, work: _Round) -> CalendarStats:
        work.stats.full_round = work.full
        pages = self._graph.delta_pages(work.token, resume_url=work.resume, window=work.window)
        for page in pages:
            work.connection = self._still_connected(work.connection)
            for item in distinct_items(page.items):
                self._item(work, item)
            if page.delta_link:
                self._end_round(work)
            self._record_drops(work)
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

    def _item(self, work: _Round, item: Mapping[str, Any]) -> None:
        item_id = str(item.get("id", ""))
        if "@removed" in item:
            work.stats.removed_seen += 1
            self._forget(work, item_id, touch_series=True)
            return
        kind = str(item.get("type") or "singleInstance")
        if kind == "seriesMaster":
            self._events.save_series(work.connection.key, item_id, item)
            if not work.full:
                work.touched.add(item_id)
            return
        work.stats.seen += 1
        master: Entity | None = None
        if kind in OCCURRENCE_KINDS:
            master_id = str(item.get("seriesMasterId") or "")
            master = self._master(work, master_id)
            if not work.full and master_id:
                work.touched.add(master_id)
        self._keep(work, item, kind, master)

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
        work = _Round(connection, token, index, window, "created", False, None, None, rules)
        key = self._keep(work, event, str(event.get("type") or "singleInstance"), None)
        self._record_drops(work)
        return key

    def _record_drops(self, work: _Round) -> None:
        """Write the decision records of the events dropped since the last page."""
        connection = work.connection
        # Only keyed hashes of each dropped event's ids, the reason and the time are written.
        self._decisions.record(connection.tenant_id, connection.user_id, work.drops)
        work.drops.clear()

    def _keep(
        self, work: _Round, item: Mapping[str, Any], kind: str, master: Entity | None
    ) -> str | None:
        merged = _with_series(item, master)
        companies = self._admit(work, merged)
        if companies is None:
            return None
        try:
            times = event_times(merged)
            anchor = occurrence_anchor(merged, times)
        except ValidationError:
            self._drop(work, merged, DROP_BAD_TIMES, forget=False)
            return None
        kept = KeptEvent(
            item_id=str(item["id"]),
            series_uid=str((master or {}).get("iCalUId") or merged.get("iCalUId") or ""),
            anchor=anchor,
            kind=kind,
            times=times,
            subject=str(merged.get("subject") or ""),
            organizer=_address(merged.get("organizer")),
            attendees=[_address(a) for a in merged.get("attendees") or [] if _address(a)],
            cancelled=bool(merged.get("isCancelled")),
            company_ids=companies,
            series_master_id=str(item.get("seriesMasterId") or ""),
            location=str((merged.get("location") or {}).get("displayName") or ""),
        )
        return self._save(work, merged, kept)

    def _admit(self, work: _Round, merged: Mapping[str, Any]) -> frozenset[str] | None:
        """Return the companies an event is kept for; ``None`` once it was dropped.

        In order: purged, the company match, then the switches and blocking rules, so a
        blocked event is never written.
        """
        if _created(merged) < purged_before(work.connection):
            self._drop(work, merged, DROP_PURGED)
            return None
        decision = classify(event_participants(merged), work.index)
        if not decision.keep:
            self._drop(work, merged, decision.reason)
            return None
        verdict = check_event(work.rules, merged)
        if verdict.blocked:
            self._drop(work, merged, str(verdict.reason), verdict.rule)
            return None
        return decision.company_ids

    def _save(self, work: _Round, merged: Mapping[str, Any], kept: KeptEvent) -> str | None:
        connection, stats = work.connection, work.stats
        try:
            key, created = self._events.save(
                tenant_id=connection.tenant_id,
                user_id=connection.user_id,
                connection=connection.key,
                event=kept,
                round_id=work.round_id,
            )
        except StorageLimitError:
            logger.warning("event not storable, dropped", extra={"user": connection.user_id})
            self._drop(work, merged, DROP_UNSTORABLE, forget=False)
            return None
        except EventDeletedError:
            self._drop(work, merged, DROP_DELETED, forget=False)
            return None
        stats.kept += 1
        stats.stored_new += int(created)
        return key

    def _drop(
        self,
        work: _Round,
        event: Mapping[str, Any],
        reason: str,
        rule: Rule | None = None,
        *,
        forget: bool = True,
    ) -> None:
        """Count a dropped event, note its decision record, and (by default) forget it here."""
        item_id = str(event["id"])
        work.stats.dropped[reason] += 1
        work.drops.append(Drop(item_id, str(event.get("iCalUId") or ""), reason, rule))
        if forget:
            self._forget(work, item_id)

    def _master(self, work: _Round, master_id: str) -> Entity | None:
        if not master_id:
            return None
        found = self._events.series(work.connection.key, master_id)
        if found is not None:
            return found
        try:
            master = self._graph.get_event(work.token, master_id)
        except NotFoundError:
            return None
        return self._events.save_series(work.connection.key, master_id, master)

    def _forget(self, work: _Round, item_id: str, *, touch_series: bool = False) -> None:
        connection = work.connection
        if touch_series and not work.full:
            # A series, or one of its instances, left the calendar: reconcile the series.
            if self._events.series(connection.key, item_id) is not None:
                work.touched.add(item_id)
            stored = self._events.item(connection.key, item_id)
            if stored is not None and stored.get("seriesMasterId"):
                work.touched.add(str(stored["seriesMasterId"]))
        removed = self._events.unlink(
            tenant_id=connection.tenant_id,
            user_id=connection.user_id,
            connection=connection.key,
            item_id=item_id,
        )
        work.stats.unlinked += int(removed)

    def _end_round(self, work: _Round) -> None:
        if work.full:
            self._sweep(work)
            return
        for master_id in sorted(work.touched):
            self._reconcile(work, master_id)
        work.touched.clear()

    def _sweep(self, work: _Round) -> None:
        """Remove stored items inside the window that this full round did not see."""
        low, high = (_stamp(moment) for moment in work.window)
        stale = [
            str(row["itemId"])
            for row in self._events.items(work.connection.key)
            if row.get("roundId") != work.round_id and low <= str(row.get("start", "")) < high
        ]
        for item_id in stale:
            self._forget(work, item_id)
        if stale:
            extra = {"user": work.connection.user_id, "removed": len(stale)}
            logger.info("calendar window swept", extra=extra)

    def _reconcile(self, work: _Round, master_id: str) -> None:
        """Make a series' stored occurrences in the window match what Graph lists now (BR-04)."""
        connection = work.connection
        try:
            present = self._graph.instances(work.token, master_id, work.window)
        except NotFoundError:
            present = []
        seen = {str(instance.get("id")) for instance in present}
        low, high = (_stamp(moment) for moment in work.window)
        for row in self._events.series_items(connection.key, master_id):
            item_id = str(row["itemId"])
            if item_id not in seen and low <= str(row.get("start", "")) < high:
                self._forget(work, item_id)
        master = self._master(work, master_id) if present else None
        for instance in present:
            kind = str(instance.get("type") or "occurrence")
            self._keep(work, {"seriesMasterId": master_id, **instance}, kind, master)
        work.stats.series_reconciled += 1

    def _save_cursor(self, work: _Round, page: DeltaPage) -> None:
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


def _with_series(item: Mapping[str, Any], master: Entity | None) -> dict[str, Any]:
    """Fill what an occurrence lacks (attendees, subject...) from its series master (BR-04)."""
    merged = dict(item)
    if master is None:
        return merged
    if not merged.get("attendees"):
        merged["attendees"] = _json_list(master.get("attendees"))
    if not merged.get("organizer"):
        merged["organizer"] = _json_object(master.get("organizer"))
    if "subject" not in merged:
        merged["subject"] = master.get("subject", "")
    if "isAllDay" not in merged:
        # A bare occurrence is all-day when its series is; its dates depend on it (BR-05).
        merged["isAllDay"] = bool(master.get("isAllDay"))
    if not merged.get("originalStartTimeZone") and master.get("originalStartTimeZone"):
        merged["originalStartTimeZone"] = master["originalStartTimeZone"]
    if "location" not in merged:
        merged["location"] = _json_object(master.get("location"))
    if master.get("isCancelled"):
        merged["isCancelled"] = True
    if not merged.get("createdDateTime"):
        merged["createdDateTime"] = master.get("createdDateTime") or ""
    return merged


def _address(value: Any) -> dict[str, str]:
    email = value.get("emailAddress") if isinstance(value, dict) else None
    if not isinstance(email, dict):
        return {}
    return {"name": str(email.get("name") or ""), "address": str(email.get("address") or "")}


def _json_list(text: Any) -> list[Any]:
    value = json.loads(text) if isinstance(text, str) and text else []
    return value if isinstance(value, list) else []


def _json_object(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) and text else {}
    return value if isinstance(value, dict) else {}


def _created(item: Mapping[str, Any]) -> datetime:
    """Return when an event came into the calendar; the epoch when Graph gave no valid time."""
    return instant(item.get("createdDateTime"))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
