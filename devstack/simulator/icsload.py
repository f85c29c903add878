"""Load calendars into the simulator from ``.ics`` files (RFC 5545) and Graph-shaped JSON.

An ``.ics`` file is parsed with ``icalendar``. Each ``VEVENT`` becomes a single event or a series
master: ``SUMMARY`` the subject, ``ORGANIZER``/``ATTENDEE`` mail addresses the participants,
``UID`` the ``iCalUId``, ``STATUS:CANCELLED`` ``isCancelled``, a ``DATE`` start an all-day event,
and ``RRULE``/``EXDATE``/``RDATE`` the series' recurrence. A ``VEVENT`` with a ``RECURRENCE-ID``
becomes an exception of its series (moved or changed), matched by ``UID``.

A file either loads, with the events that could not be used listed with a reason, or is rejected
with :class:`CalendarLoadError` saying why (not iCalendar, no events). Nothing else escapes.

Known limitations: floating times (no zone) are read as UTC; ``RDATE`` periods and
``X-WR-TIMEZONE`` are ignored; only the first ``RRULE`` of an event is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import icalendar

from devstack.simulator import ids
from devstack.simulator.calendar import SimEvent
from devstack.simulator.recurrence import Recurrence, RecurrenceError, zone

if TYPE_CHECKING:
    from pathlib import Path

CHECK_SPAN = timedelta(days=3 * 366)
"""How far past its start a series is expanded once at load, to refuse rules that fail."""


class CalendarLoadError(ValueError):
    """Raised when a calendar file cannot be loaded at all; the message says why."""


@dataclass(slots=True)
class CalendarLoad:
    """What a file gave: the events to store and, for each event left out, why."""

    events: list[SimEvent] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_ics(raw: bytes, now: str = "") -> CalendarLoad:
    """Turn an iCalendar document into simulator events.

    Raises:
        CalendarLoadError: when the bytes are not iCalendar or hold no usable event.
    """
    try:
        parsed = icalendar.Calendar.from_ical(raw)
    # Any parser failure means "not loadable"; icalendar raises several unrelated types.
    except Exception as error:
        message = f"not an iCalendar document: {type(error).__name__}: {str(error)[:200]}"
        raise CalendarLoadError(message) from error
    components = list(parsed.walk("VEVENT"))
    if not components:
        message = "the document holds no VEVENT"
        raise CalendarLoadError(message)
    result = CalendarLoad()
    masters: dict[str, SimEvent] = {}
    overrides = []
    for position, component in enumerate(components):
        if component.get("RECURRENCE-ID") is not None:
            overrides.append((position, component))
            continue
        _collect(result, position, lambda c=component: _event(c, now), masters)
    for position, component in overrides:
        _collect(result, position, lambda c=component: _override(c, masters, now), masters)
    if not result.events:
        message = "no VEVENT could be used: " + "; ".join(result.skipped[:5])
        raise CalendarLoadError(message)
    return result


def load_json(raw: bytes) -> list[dict[str, Any]]:
    """Read Graph-shaped events from JSON: a list, or an object with ``value``.

    Raises:
        CalendarLoadError: when the text is not such JSON.
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"not JSON: {error}"
        raise CalendarLoadError(message) from error
    events = data.get("value") if isinstance(data, dict) else data
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        message = "JSON must be a list of events or an object with a 'value' list"
        raise CalendarLoadError(message)
    return events


def load_file(path: Path) -> CalendarLoad | list[dict[str, Any]]:
    """Load an ``.ics`` or ``.json`` file by its suffix.

    Raises:
        CalendarLoadError: when the file cannot be read or loaded.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        message = f"{path.name}: cannot be read: {error}"
        raise CalendarLoadError(message) from error
    if path.suffix.lower() == ".json":
        return load_json(raw)
    return load_ics(raw)


def _collect(result: CalendarLoad, position: int, build: Any, masters: dict[str, SimEvent]) -> None:
    try:
        event = build()
    except (RecurrenceError, ValueError, TypeError, KeyError, AttributeError) as error:
        result.skipped.append(f"VEVENT {position}: {type(error).__name__}: {str(error)[:160]}")
        return
    if event is None:
        return
    result.events.append(event)
    masters.setdefault(event.ical_uid, event)


def _event(component: Any, now: str) -> SimEvent:
    start, all_day, zone_name = _start(component)
    end = _end(component, start, all_day)
    event = SimEvent(
        id=ids.immutable_message_id(),
        ical_uid=str(component.get("UID") or ids.guid()),
        data=_data(component),
        start=start,
        end=end,
        zone_name=zone_name,
        all_day=all_day,
        recurrence=_recurrence(component, start),
        modified=now,
    )
    if event.recurrence is not None:
        # dateutil reads a rule lazily; expand once so a rule that fails is refused here.
        event.recurrence.between(start, start, start + CHECK_SPAN)
    return event


def _override(component: Any, masters: dict[str, SimEvent], now: str) -> SimEvent | None:
    master = masters.get(str(component.get("UID") or ""))
    if master is None or master.recurrence is None:
        return _event(component, now)
    recurrence_id = component.decoded("RECURRENCE-ID")
    if master.all_day:
        # BR-05: an all-day series' exception names its occurrence by date; Outlook writes that
        # date as local midnight in some zone, which as an instant is often the day before.
        day = recurrence_id.date() if isinstance(recurrence_id, datetime) else recurrence_id
        original = datetime(day.year, day.month, day.day, tzinfo=UTC)
    else:
        original = _moment(recurrence_id, master.start.tzinfo)
    start, all_day, _ = _start(component)
    changes = {**_data(component), "_start": start, "_end": _end(component, start, all_day)}
    master.exceptions[original.astimezone(UTC)] = changes
    return None


def _start(component: Any) -> tuple[datetime, bool, str]:
    if component.get("DTSTART") is None:
        message = "VEVENT has no DTSTART"
        raise ValueError(message)
    value = component.decoded("DTSTART")
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC), True, "UTC"
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC), False, "UTC"
    return value, False, _zone_name(component, value.tzinfo)


def _zone_name(component: Any, tz: tzinfo) -> str:
    name = getattr(tz, "key", None) or str(component["DTSTART"].params.get("TZID", "")) or "UTC"
    try:
        zone(name)
    except RecurrenceError:
        return "UTC"
    return name


def _end(component: Any, start: datetime, all_day: bool) -> datetime:
    if component.get("DTEND") is not None:
        return _moment(component.decoded("DTEND"), start.tzinfo)
    if component.get("DURATION") is not None:
        length: timedelta = component.decoded("DURATION")
        return start + length
    return start + (timedelta(days=1) if all_day else timedelta(0))


def _moment(value: date | datetime, tz: tzinfo | None) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=tz or UTC)
    return value if value.tzinfo else value.replace(tzinfo=tz or UTC)


def _recurrence(component: Any, start: datetime) -> Recurrence | None:
    rule = component.get("RRULE")
    if rule is None:
        return None
    if isinstance(rule, list):
        rule = rule[0]
    rule = icalendar.vRecur(dict(rule))
    if rule.get("UNTIL"):
        # dateutil wants UNTIL in UTC when the start is aware; a date or floating UNTIL is local.
        rule["UNTIL"] = [_moment(rule["UNTIL"][0], start.tzinfo).astimezone(UTC)]
    text = str(rule.to_ical().decode())  # type: ignore[no-untyped-call]
    excluded = _dates(component, "EXDATE")
    exdates = [_moment(v, start.tzinfo) for v in excluded]
    # A DATE EXDATE on a timed series removes that day's occurrence, whatever its time.
    exdays = {v for v in excluded if not isinstance(v, datetime)}
    rdates = [_moment(v, start.tzinfo) for v in _dates(component, "RDATE")]
    return Recurrence(text, exdates, rdates, exdays)


def _dates(component: Any, name: str) -> list[date | datetime]:
    found = component.get(name)
    if found is None:
        return []
    groups = found if isinstance(found, list) else [found]
    values = [item.dt for group in groups for item in getattr(group, "dts", [])]
    return [v for v in values if isinstance(v, date)]


def _data(component: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"subject": str(component.get("SUMMARY") or "")}
    organizer = _address(component.get("ORGANIZER"))
    if organizer:
        data["organizer"] = {"emailAddress": organizer}
    attendees = component.get("ATTENDEE") or []
    attendees = attendees if isinstance(attendees, list) else [attendees]
    data["attendees"] = [
        {"type": "required", "emailAddress": found}
        for found in (_address(a) for a in attendees)
        if found
    ]
    if str(component.get("STATUS") or "").upper() == "CANCELLED":
        data["isCancelled"] = True
    if component.get("LOCATION"):
        data["location"] = {"displayName": str(component.get("LOCATION"))}
    return data


def _address(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    text = str(value)
    address = text[7:] if text.lower().startswith("mailto:") else text
    if "@" not in address:
        return None
    name = str(getattr(value, "params", {}).get("CN", ""))
    return {"name": name, "address": address}
