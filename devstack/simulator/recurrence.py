"""Times and recurrence for the simulated calendar: zones, Graph patterns as RRULEs, expansion.

A series is kept as an RFC 5545 recurrence (an ``RRULE`` plus ``EXDATE``/``RDATE`` moments) over
a start in the series' own time zone, and expanded with ``dateutil.rrule``, so daylight saving
moves the UTC instant and keeps the wall-clock time, as Exchange does. Graph's
``patternedRecurrence`` is turned into the same form by :func:`rrule_from_graph`.

Zone names may be IANA names (``Europe/Berlin``) or the Windows names Outlook uses (``W. Europe
Standard Time``), mapped with the CLDR table that ``icalendar`` ships.

Known limitations: ``firstDayOfWeek`` only matters for weekly series with an interval above 1,
as in Outlook; a pattern ``index`` other than first..fourth and last is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

_DAYS = {
    "sunday": "SU",
    "monday": "MO",
    "tuesday": "TU",
    "wednesday": "WE",
    "thursday": "TH",
    "friday": "FR",
    "saturday": "SA",
}
_INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_FREQ = {
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "absoluteMonthly": "MONTHLY",
    "relativeMonthly": "MONTHLY",
    "absoluteYearly": "YEARLY",
    "relativeYearly": "YEARLY",
}
MAX_OCCURRENCES = 5000
"""Expansion stops here, so an endless daily series cannot hang a request."""


class RecurrenceError(ValueError):
    """Raised when a zone name or a recurrence cannot be understood; the message says which."""


def zone(name: str | None) -> tzinfo:
    """Return the zone for an IANA or Windows name; ``UTC`` for none.

    Raises:
        RecurrenceError: when the name is unknown.
    """
    if not name or name.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return UTC
    mapped = WINDOWS_TO_OLSON.get(name, name)
    try:
        return ZoneInfo(mapped)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        # A folder of the zone database ("America") is an OSError, not a missing zone.
        message = f"unknown time zone {name!r}"
        raise RecurrenceError(message) from error


def parse_graph_time(value: Any) -> tuple[datetime, str]:
    """Read a Graph ``dateTimeTimeZone`` into an aware moment and its zone name.

    Raises:
        RecurrenceError: when the value is not a dateTimeTimeZone.
    """
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        message = "start and end must be {dateTime, timeZone} objects"
        raise RecurrenceError(message)
    name = str(value.get("timeZone") or "UTC")
    text = value["dateTime"].rstrip("Z")
    try:
        naive = datetime.fromisoformat(text[:26])
    except ValueError as error:
        message = f"dateTime {value['dateTime']!r} is not ISO 8601"
        raise RecurrenceError(message) from error
    if naive.tzinfo is not None:
        return naive.astimezone(UTC), name
    return naive.replace(tzinfo=zone(name)), name


def graph_time(moment: datetime, zone_name: str = "UTC") -> dict[str, str]:
    """Render a moment as Graph renders it in the zone asked for with ``outlook.timezone``."""
    local = moment.astimezone(zone(zone_name)).replace(tzinfo=None)
    return {"dateTime": local.isoformat(timespec="microseconds") + "0", "timeZone": zone_name}


def midnight(day: date, zone_name: str | None) -> datetime:
    """Return the start of a day in a zone, as an aware moment."""
    return datetime.combine(day, time(0), tzinfo=zone(zone_name))


@dataclass(slots=True)
class Recurrence:
    """An RFC 5545 recurrence over a series start, with the moments it adds and removes."""

    rule: str
    exdates: list[datetime] = field(default_factory=list)
    rdates: list[datetime] = field(default_factory=list)
    exdays: set[date] = field(default_factory=set)

    def between(self, start: datetime, low: datetime, high: datetime) -> list[datetime]:
        """Return the occurrence starts in ``[low, high)``; ``start`` is the series' first start.

        Raises:
            RecurrenceError: when the rule cannot be read.
        """
        try:
            rules = rrulestr(self.rule, dtstart=start, forceset=True)
        except (ValueError, TypeError) as error:
            message = f"recurrence rule {self.rule!r} is not valid: {error}"
            raise RecurrenceError(message) from error
        for moment in self.exdates:
            rules.exdate(moment)
        for moment in self.rdates:
            rules.rdate(moment)
        found: list[datetime] = []
        for moment in rules:
            if moment >= high or len(found) >= MAX_OCCURRENCES:
                break
            if moment >= low and moment.date() not in self.exdays:
                found.append(moment)
        return found


def rrule_from_graph(recurrence: Any, start: datetime) -> Recurrence:
    """Turn Graph's ``patternedRecurrence`` into an RRULE over ``start`` (aware, series zone).

    Raises:
        RecurrenceError: when the pattern or range is missing or malformed.
    """
    if not isinstance(recurrence, dict):
        message = "recurrence must be an object with pattern and range"
        raise RecurrenceError(message)
    pattern, span = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = str(pattern.get("type", ""))
    if kind not in _FREQ:
        message = f"recurrence pattern type {kind!r} is not supported"
        raise RecurrenceError(message)
    parts = [f"FREQ={_FREQ[kind]}", f"INTERVAL={int(pattern.get('interval') or 1)}"]
    parts += _pattern_parts(kind, pattern)
    parts += _range_parts(span, start)
    return Recurrence(";".join(parts))


def _pattern_parts(kind: str, pattern: dict[str, Any]) -> list[str]:
    names = [str(day).lower() for day in pattern.get("daysOfWeek") or []]
    days = [_DAYS[name] for name in names if name in _DAYS]
    parts: list[str] = []
    if kind == "weekly":
        parts.append("BYDAY=" + ",".join(days or ["MO"]))
        first = _DAYS.get(str(pattern.get("firstDayOfWeek", "sunday")).lower(), "SU")
        parts.append(f"WKST={first}")
    if kind.startswith("absolute"):
        parts.append(f"BYMONTHDAY={int(pattern.get('dayOfMonth') or 1)}")
    if kind.startswith("relative"):
        index = str(pattern.get("index", "first"))
        if index not in _INDEX:
            message = f"recurrence index {index!r} is not supported"
            raise RecurrenceError(message)
        parts.append("BYDAY=" + ",".join(days or ["MO"]))
        parts.append(f"BYSETPOS={_INDEX[index]}")
    if kind.endswith("Yearly"):
        parts.append(f"BYMONTH={int(pattern.get('month') or 1)}")
    return parts


def _range_parts(span: dict[str, Any], start: datetime) -> list[str]:
    kind = str(span.get("type", "noEnd"))
    if kind == "numbered":
        return [f"COUNT={int(span.get('numberOfOccurrences') or 1)}"]
    if kind == "endDate":
        try:
            last = date.fromisoformat(str(span.get("endDate")))
        except ValueError as error:
            message = "recurrence range endDate must be a date"
            raise RecurrenceError(message) from error
        # The end date is inclusive in the series' zone; an RRULE UNTIL over an aware start is UTC.
        until = datetime.combine(last + timedelta(days=1), time(0), tzinfo=start.tzinfo)
        stamp = (until.astimezone(UTC) - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
        return [f"UNTIL={stamp}"]
    return []
