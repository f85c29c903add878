"""What a calendar round does with each event it sees: keep it, drop it, or forget it.

:class:`EventKeeper` takes the items of a round's delta pages for the calendar sync worker
(:mod:`shared.sync.calendar`) and writes them through :class:`shared.sync.eventstore.EventStore`.
A full round (the first one, a moved window, or a reset after 410) ends by removing from this
calendar every stored item inside the window that the round did not see, so a new window neither
duplicates (records are keyed by meeting occurrence) nor keeps what vanished meanwhile. Items
before the window's start are kept as history.

Recurrence (BR-04): a series master (legacy delta answers carry it) is remembered per calendar;
an occurrence or exception is stored under its series' ``iCalUId`` and original start, and
matched through the series' attendees when it carries none. Any change to a series seen in an
incremental round reconciles the series: ``/instances`` in the window is read, stored
occurrences missing from it are removed (a cancelled occurrence that silently vanished), the
rest are updated. ``@removed`` removes the item from this calendar; an event cancelled by its
organiser (``isCancelled``) is kept, marked cancelled, and never counts as upcoming.

Power tools: an event deleted in the product carries a tombstone (by its tenant-wide key and by
each holder's item id) and is dropped as ``deleted``. After a purge of the calendar, every
event the calendar held before it is dropped as ``purged``: an event counts as held since its
``createdDateTime`` (for an occurrence, its series'; an event without one counts as always
held), so neither a later change, a moved window, a full round nor a 410 reset brings one back,
and the future occurrences of a series created before the purge stay out too; meetings that
arrive in the calendar after the purge sync as usual.

Blocking rules: the tenant's and the user's rules apply to each event once it matched a company
and before anything is written (see :mod:`shared.sync.eventrules`: the organiser as sender, the
attendees as recipients, the subject and body as content). A dropped event leaves only a
decision record, as a dropped message does (keyed hashes of its id and ``iCalUId``, the reason
or rule, the time), in the user's calendar partition of the decision table; one already stored
is removed from this calendar.

One event never blocks its calendar: an item without an id, or one whose fields have shapes
the decision or the record cannot read, is dropped as ``unreadable`` and counted; a field of
another JSON type than Graph documents is stored as missing.

Known limitations: a series whose master changes outside the window is not reconciled until it
changes inside it. A rule saved later does not remove events already stored until they change
or a full round sees them again.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from shared.errors import NotFoundError, StorageLimitError, ValidationError
from shared.matching.addresses import event_participants
from shared.matching.companies import classify
from shared.rules.store import Drop
from shared.sync.eventrows import KeptEvent, stamp
from shared.sync.eventrules import check_event
from shared.sync.eventstore import EventDeletedError
from shared.sync.eventtimes import event_times, occurrence_anchor
from shared.sync.jobs import instant, purged_before

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from shared.adapters.graphcalendar import GraphCalendarClient
    from shared.adapters.tables import Entity
    from shared.rules.model import Rule
    from shared.rules.store import DecisionLog
    from shared.sync.calendarjob import CalendarRound
    from shared.sync.eventstore import EventStore

logger = logging.getLogger(__name__)

DROP_UNSTORABLE = "unstorable"
DROP_UNREADABLE = "unreadable"
DROP_BAD_TIMES = "bad_times"
DROP_DELETED = "deleted"
DROP_PURGED = "purged"
OCCURRENCE_KINDS = frozenset({"occurrence", "exception"})


class EventKeeper:
    """Keeps, drops and forgets the events a calendar round sees; reconciles series at its end."""

    def __init__(
        self, *, graph: GraphCalendarClient, events: EventStore, decisions: DecisionLog
    ) -> None:
        self._graph = graph
        self._events = events
        self._decisions = decisions

    def handle(self, work: CalendarRound, item: Mapping[str, Any]) -> None:
        """Take one item of a delta page: a removal, a series master, or an event to keep."""
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            # Nothing can key an item without an id: it is counted, never recorded.
            work.stats.dropped[DROP_UNREADABLE] += 1
            return
        if "@removed" in item:
            work.stats.removed_seen += 1
            self._forget(work, item_id, touch_series=True)
            return
        kind = _text(item.get("type")) or "singleInstance"
        if kind == "seriesMaster":
            self._events.save_series(work.connection.key, item_id, item)
            if not work.full:
                work.touched.add(item_id)
            return
        work.stats.seen += 1
        master: Entity | None = None
        if kind in OCCURRENCE_KINDS:
            master_id = _text(item.get("seriesMasterId"))
            master = self._master(work, master_id)
            if not work.full and master_id:
                work.touched.add(master_id)
        self.keep(work, item, kind, master)

    def keep(
        self, work: CalendarRound, item: Mapping[str, Any], kind: str, master: Entity | None
    ) -> str | None:
        """Store an event with what its series adds; return its key, ``None`` once dropped."""
        merged = _with_series(item, master)
        try:
            kept = self._kept(work, item, kind, master, merged)
        # NOTE: one event must never block its calendar: a field of a shape the decision or
        # the record does not expect drops that event alone (storage errors are SyncErrors).
        except (TypeError, ValueError, AttributeError, KeyError):
            logger.warning("event not readable, dropped", extra={"user": work.connection.user_id})
            self._drop(work, merged, DROP_UNREADABLE, forget=False)
            return None
        return None if kept is None else self._save(work, merged, kept)

    def _kept(
        self,
        work: CalendarRound,
        item: Mapping[str, Any],
        kind: str,
        master: Entity | None,
        merged: dict[str, Any],
    ) -> KeptEvent | None:
        """Return the event to store, or ``None`` once it was dropped (and recorded)."""
        companies = self._admit(work, merged)
        if companies is None:
            return None
        try:
            times = event_times(merged)
            anchor = occurrence_anchor(merged, times)
        except ValidationError:
            self._drop(work, merged, DROP_BAD_TIMES, forget=False)
            return None
        attendees = merged.get("attendees")
        attendees = attendees if isinstance(attendees, list) else []
        location = merged.get("location")
        return KeptEvent(
            item_id=str(item["id"]),
            series_uid=str((master or {}).get("iCalUId") or merged.get("iCalUId") or ""),
            anchor=anchor,
            kind=kind,
            times=times,
            subject=_text(merged.get("subject")),
            organizer=_address(merged.get("organizer")),
            attendees=[_address(a) for a in attendees if _address(a)],
            cancelled=merged.get("isCancelled") is True,
            company_ids=companies,
            series_master_id=_text(item.get("seriesMasterId")),
            location=_text(location.get("displayName")) if isinstance(location, dict) else "",
            created_at=_created(merged).isoformat(timespec="seconds"),
        )

    def record_drops(self, work: CalendarRound) -> None:
        """Write the decision records of the events dropped since the last page."""
        connection = work.connection
        # Only keyed hashes of each dropped event's ids, the reason and the time are written.
        self._decisions.record(connection.tenant_id, connection.user_id, work.drops)
        work.drops.clear()

    def end_round(self, work: CalendarRound) -> None:
        """Sweep the window after a full round; reconcile the series an incremental one touched."""
        if work.full:
            self._sweep(work)
            return
        for master_id in sorted(work.touched):
            self._reconcile(work, master_id)
        work.touched.clear()

    def _admit(self, work: CalendarRound, merged: Mapping[str, Any]) -> frozenset[str] | None:
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

    def _save(self, work: CalendarRound, merged: Mapping[str, Any], kept: KeptEvent) -> str | None:
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
        work: CalendarRound,
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

    def _master(self, work: CalendarRound, master_id: str) -> Entity | None:
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

    def _forget(self, work: CalendarRound, item_id: str, *, touch_series: bool = False) -> None:
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

    def _sweep(self, work: CalendarRound) -> None:
        """Remove stored items inside the window that this full round did not see."""
        low, high = (stamp(moment) for moment in work.window)
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

    def _reconcile(self, work: CalendarRound, master_id: str) -> None:
        """Make a series' stored occurrences in the window match what Graph lists now (BR-04)."""
        connection = work.connection
        try:
            present = self._graph.instances(work.token, master_id, work.window)
        except NotFoundError:
            present = []
        seen = {str(instance.get("id")) for instance in present}
        low, high = (stamp(moment) for moment in work.window)
        for row in self._events.series_items(connection.key, master_id):
            item_id = str(row["itemId"])
            if item_id not in seen and low <= str(row.get("start", "")) < high:
                self._forget(work, item_id)
        master = self._master(work, master_id) if present else None
        for instance in present:
            kind = str(instance.get("type") or "occurrence")
            self.keep(work, {"seriesMasterId": master_id, **instance}, kind, master)
        work.stats.series_reconciled += 1


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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _address(value: Any) -> dict[str, str]:
    email = value.get("emailAddress") if isinstance(value, dict) else None
    if not isinstance(email, dict):
        return {}
    return {"name": _text(email.get("name")), "address": _text(email.get("address"))}


def _json_list(text: Any) -> list[Any]:
    value = json.loads(text) if isinstance(text, str) and text else []
    return value if isinstance(value, list) else []


def _json_object(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) and text else {}
    return value if isinstance(value, dict) else {}


def _created(item: Mapping[str, Any]) -> datetime:
    """Return when an event came into the calendar; the epoch when Graph gave no valid time."""
    return instant(item.get("createdDateTime"))
