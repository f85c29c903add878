"""One user's simulated primary calendar: events, recurring series and their instances.

A single event is one instance. A series master keeps its recurrence (see
:mod:`devstack.simulator.recurrence`), the occurrences cancelled one by one, and the exceptions
(occurrences changed on their own), each keyed by the occurrence's original start in UTC.
Instances are computed for a window on demand, as Exchange computes a calendar view.

Two behaviours reported from the field can be switched on (:class:`CalendarBehaviour`):

- ``legacy_series`` (BR-04, 2019 reports): calendarView delta carries the series master itself,
  its occurrences carry only ``id``, ``type``, ``seriesMasterId``, ``start`` and ``end``, and an
  occurrence cancelled on its own vanishes with no ``@removed`` entry.
- ``all_day_instants`` (BR-05, 2021 reports): an all-day event comes back as the instants of
  midnight in its own zone (07:00Z for Pacific time) instead of midnight to midnight in the zone
  asked for.

Known limitations: attendee responses, reminders, online meetings and attachments are not
modelled; an event created by ``POST /me/events`` is copied into the calendars of attendees who
are simulator users, but later changes are not propagated to those copies.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.simulator import ids
from devstack.simulator.recurrence import (
    Recurrence,
    RecurrenceError,
    graph_time,
    midnight,
    parse_graph_time,
    rrule_from_graph,
)

SERVER_FIELDS = frozenset(
    {
        "id",
        "iCalUId",
        "type",
        "seriesMasterId",
        "start",
        "end",
        "isAllDay",
        "recurrence",
        "createdDateTime",
    }
)
BARE_FIELDS = ("@odata.type", "id", "type", "seriesMasterId", "start", "end")


@dataclass(frozen=True, slots=True)
class CalendarBehaviour:
    """Which reported Graph behaviours the calendar endpoints show (see the module docstring)."""

    legacy_series: bool = False
    all_day_instants: bool = False


OLD = CalendarBehaviour(legacy_series=True, all_day_instants=False)
NEW = CalendarBehaviour(legacy_series=False, all_day_instants=True)


@dataclass(slots=True)
class SimEvent:
    """A single event or a series master as the calendar stores it."""

    id: str
    ical_uid: str
    data: dict[str, Any]
    start: datetime
    end: datetime
    zone_name: str
    all_day: bool
    recurrence: Recurrence | None = None
    graph_recurrence: dict[str, Any] | None = None
    exceptions: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    cancelled: set[datetime] = field(default_factory=set)
    modified: str = ""
    created: str = ""
    """When the event came into the calendar; a loaded event may say (``createdDateTime``)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One thing a calendar view shows: a single event, an occurrence or an exception."""

    id: str
    event: SimEvent
    kind: str
    start: datetime
    end: datetime
    original: datetime | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    def overlaps(self, low: datetime, high: datetime) -> bool:
        """Tell whether the instance touches ``[low, high)``, as calendarView selects."""
        return self.start < high and self.end > low


def occurrence_id(master_id: str, original: datetime) -> str:
    """Return the id of an occurrence: its master's id and its original start."""
    return f"{master_id}_{original.astimezone(UTC).strftime('%Y%m%dT%H%M%S')}"


class Calendar:
    """A user's primary calendar; the caller holds the simulator lock."""

    def __init__(self) -> None:
        self.events: dict[str, SimEvent] = {}
        self.generation = 0

    def add(self, data: dict[str, Any], now: str) -> SimEvent:
        """Store a Graph-shaped event (single or series master) and return it.

        Raises:
            RecurrenceError: when its times or recurrence cannot be read.
        """
        start, zone_name = parse_graph_time(data.get("start"))
        end, _ = parse_graph_time(data.get("end"))
        all_day = bool(data.get("isAllDay"))
        if all_day:
            start, end = midnight(start.date(), zone_name), midnight(end.date(), zone_name)
        if end < start:
            message = "end must not be before start"
            raise RecurrenceError(message)
        graph_recurrence = data.get("recurrence") or None
        event = SimEvent(
            id=ids.immutable_message_id(),
            ical_uid=str(data.get("iCalUId") or _ical_uid()),
            data={k: copy.deepcopy(v) for k, v in data.items() if k not in SERVER_FIELDS},
            start=start,
            end=end,
            zone_name=str(data.get("originalStartTimeZone") or zone_name),
            all_day=all_day,
            recurrence=rrule_from_graph(graph_recurrence, start) if graph_recurrence else None,
            graph_recurrence=copy.deepcopy(graph_recurrence),
            modified=now,
            created=str(data.get("createdDateTime") or now),
        )
        self.events[event.id] = event
        return event

    def put(self, event: SimEvent) -> SimEvent:
        """Store an event built elsewhere (the ``.ics`` loader)."""
        self.events[event.id] = event
        return event

    def find(self, event_id: str) -> tuple[SimEvent, datetime | None] | None:
        """Return the event an id names and, for an occurrence id, its original start."""
        if event_id in self.events:
            return self.events[event_id], None
        master_id, _, stamp = event_id.rpartition("_")
        master = self.events.get(master_id)
        if master is None or master.recurrence is None:
            return None
        try:
            original = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            return None
        return master, original

    def instances(self, low: datetime, high: datetime) -> list[Instance]:
        """Return every instance overlapping ``[low, high)``, cancelled occurrences left out."""
        found: list[Instance] = []
        for event in self.events.values():
            found.extend(i for i in self.expand(event, low, high) if i.overlaps(low, high))
        return sorted(found, key=lambda i: (i.start, i.id))

    def expand(self, event: SimEvent, low: datetime, high: datetime) -> list[Instance]:
        """Return the instances of one event that may overlap ``[low, high)``."""
        if event.recurrence is None:
            return [Instance(event.id, event, "singleInstance", event.start, event.end)]
        length = event.end - event.start
        # Start early by the length so that an occurrence running into the window is found.
        starts = event.recurrence.between(event.start, low - length, high)
        found = []
        for start in starts:
            original = start.astimezone(UTC)
            if original in event.cancelled:
                continue
            changes = event.exceptions.get(original)
            kind = "exception" if changes is not None else "occurrence"
            begin = changes.get("_start", start) if changes else start
            finish = changes.get("_end", begin + length) if changes else start + length
            found.append(
                Instance(
                    occurrence_id(event.id, original),
                    event,
                    kind,
                    begin,
                    finish,
                    original,
                    changes or {},
                )
            )
        return found

    def instance(self, master: SimEvent, original: datetime) -> Instance | None:
        """Return one occurrence of a series by original start, or None when there is none."""
        around = self.expand(master, original - timedelta(days=1), original + timedelta(days=1))
        return next((i for i in around if i.original == original), None)


def render(
    item: Instance, zone_name: str, behaviour: CalendarBehaviour, *, bare: bool = False
) -> dict[str, Any]:
    """Return an instance as Graph JSON with times in ``zone_name`` (``outlook.timezone``)."""
    event = item.event
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.event",
        "id": item.id,
        "type": item.kind,
        "start": _time(item.start, item, zone_name, behaviour),
        "end": _time(item.end, item, zone_name, behaviour),
    }
    if item.kind != "singleInstance":
        body["seriesMasterId"] = event.id
    if bare:
        return body
    data = {**event.data, **{k: v for k, v in item.changes.items() if not k.startswith("_")}}
    body.update(
        {
            "iCalUId": event.ical_uid if item.original is None else _occurrence_uid(item),
            "isAllDay": event.all_day,
            "isCancelled": bool(data.pop("isCancelled", False)),
            "originalStartTimeZone": event.zone_name,
            "originalEndTimeZone": event.zone_name,
            "subject": data.pop("subject", ""),
            "organizer": data.pop("organizer", None),
            "attendees": data.pop("attendees", []),
            "createdDateTime": event.created or event.modified,
            "lastModifiedDateTime": event.modified,
            **data,
        }
    )
    if item.original is not None:
        body["originalStart"] = item.original.strftime("%Y-%m-%dT%H:%M:%SZ")
    body["@odata.etag"] = f'W/"{_digest(body)[:24]}"'
    return body


def render_master(event: SimEvent, zone_name: str, behaviour: CalendarBehaviour) -> dict[str, Any]:
    """Return a series master as Graph JSON, with its recurrence."""
    master = Instance(event.id, event, "seriesMaster", event.start, event.end)
    body = render(master, zone_name, behaviour)
    body.pop("seriesMasterId", None)
    body["recurrence"] = copy.deepcopy(event.graph_recurrence) or _ics_recurrence(event)
    cancelled = sorted(m.strftime("%Y-%m-%dT%H:%M:%SZ") for m in event.cancelled)
    body["cancelledOccurrences"] = cancelled
    body["@odata.etag"] = f'W/"{_digest(body)[:24]}"'
    return body


def fingerprint(body: dict[str, Any]) -> str:
    """Return a digest of rendered JSON, to tell whether an item changed between rounds."""
    return _digest(body)


def _time(
    moment: datetime, item: Instance, zone_name: str, behaviour: CalendarBehaviour
) -> dict[str, str]:
    if not item.event.all_day or behaviour.all_day_instants:
        return graph_time(moment, zone_name)
    # Documented behaviour: an all-day event is midnight to midnight in whatever zone is asked.
    local_day = moment.astimezone(item.event.start.tzinfo).date()
    return {"dateTime": f"{local_day.isoformat()}T00:00:00.0000000", "timeZone": zone_name}


def _occurrence_uid(item: Instance) -> str:
    stamp = (item.original or item.start).strftime("%Y%m%dT%H%M%S")
    return f"{item.event.ical_uid}-{stamp}"


def _ics_recurrence(event: SimEvent) -> dict[str, Any] | None:
    if event.recurrence is None:
        return None
    return {"pattern": {"type": "rrule", "rule": event.recurrence.rule}, "range": {}}


def _ical_uid() -> str:
    return "040000008200E00074C5B7101A82E008" + ids.guid().replace("-", "").upper()


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps({k: v for k, v in body.items() if k != "@odata.etag"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
