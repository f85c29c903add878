"""Event times as the product stores them: UTC instants, or dates for all-day events (BR-05).

Graph is asked for UTC (``Prefer: outlook.timezone="UTC"``). A timed event is stored as its UTC
start and end instants plus the zone it was created in (``originalStartTimeZone``), so it can
be shown in any zone.

An all-day event is a date range, not two instants: it is stored as its start date and its
exclusive end date, the same for every user in every zone; a one-day event is one date. Graph
has been seen to give all-day times in two forms, and both give the same dates:

- midnight to midnight in the zone asked for, whatever the event's own zone (documented);
- the instants of midnight in the event's own zone (for Pacific time, 07:00Z to 07:00Z); these
  are turned back into dates in ``originalStartTimeZone``, a Windows or IANA zone name.

An occurrence of a series is identified by its original start (``originalStart``), which does
not move when the occurrence is moved; for an all-day series it is compared by date, never as an
instant (an exception's ``originalStart`` may be 07:00Z while its start is 00:00 UTC).

The product keeps times from :data:`EARLIEST` to :data:`LATEST` (the years 1900 to 2999 in
UTC; for an all-day event its dates, end exclusive). A time outside them, including one that UTC
or the event's zone cannot hold at all, is refused with ``ValidationError`` like any unreadable
time, never an overflow, so a meeting outside them is refused before Graph is asked to create it
and a synced event outside them is dropped rather than stored.

Known limitations: a zone name that is neither IANA nor in the CLDR Windows table is treated as
UTC, so an all-day event in such a zone given as instants east of UTC could land a day early.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from shared.errors import ValidationError

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "must be a date-time from 1900-01-01T00:00:00Z to 3000-01-01T00:00:00Z"
DATE_OUT_OF_RANGE = "must be a date from 1900-01-01 to 3000-01-01"
UTC_NAMES = frozenset({"UTC", "Z", "GMT", "ETC/UTC"})


@dataclass(frozen=True, slots=True)
class EventTimes:
    """When an event happens: UTC instants, and for an all-day event its dates.

    Attributes:
        start: the start instant (for all-day events, midnight UTC of ``start_date``).
        end: the end instant (for all-day events, midnight UTC of ``end_date``).
        zone: the zone the event was created in, as Graph names it.
        all_day: whether the event is a date range.
        start_date: the first day of an all-day event.
        end_date: the day after the last day of an all-day event (exclusive).
    """

    start: datetime
    end: datetime
    zone: str
    all_day: bool = False
    start_date: date | None = None
    end_date: date | None = None


def zone_of(name: str | None) -> tzinfo | None:
    """Return the zone for an IANA or Windows zone name, or ``None`` when it is unknown.

    Only a zone of the database (or a Windows name mapped to one) is read, so a folder of the
    database (``America``), a path (``../x``, ``Europe//Paris``) or a file that holds no zone is
    unknown like any other name, never an error.
    """
    if not name or name.strip().upper() in UTC_NAMES:
        return UTC
    key = WINDOWS_TO_OLSON.get(name.strip(), name.strip())
    if key not in _zone_keys():
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # A listed zone that cannot be read now (the database changed under the process).
        return None


@cache
def _zone_keys() -> frozenset[str]:
    # "localtime" is the host's own zone, which no caller or calendar can mean.
    return frozenset(available_timezones() - {"localtime"})


def names_one_instant(wall: datetime, zone: tzinfo) -> bool:
    """Tell whether a wall-clock time happens exactly once in a zone.

    A time in the hour the clocks repeat when they go back (a fold) happens twice, and one in
    the hour they skip when they go forward (a gap) never does: neither names one instant.
    """
    first, second = (wall.replace(tzinfo=zone, fold=fold) for fold in (0, 1))
    return first.utcoffset() == second.utcoffset()


def parse_instant(value: Any, field: str) -> datetime:
    """Read a Graph ``dateTimeTimeZone`` (or an ISO 8601 string) as an aware UTC instant.

    A date-time without an offset is read in the value's ``timeZone`` (UTC when absent).

    Raises:
        ValidationError: naming ``field`` when the value is not a date-time.
    """
    if isinstance(value, dict):
        text, zone_name = value.get("dateTime"), value.get("timeZone")
    else:
        text, zone_name = value, None
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(field, "must be a date-time")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise ValidationError(field, "must be an ISO 8601 date-time") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone_of(zone_name) or UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise ValidationError(field, OUT_OF_RANGE) from error


def in_range(moment: datetime, field: str) -> datetime:
    """Return an aware moment as a UTC instant, refusing one outside the times the product keeps.

    Raises:
        ValidationError: naming ``field`` when the moment is before :data:`EARLIEST` or after
            :data:`LATEST`, or cannot be shown in UTC at all.
    """
    try:
        instant = moment.astimezone(UTC)
    except OverflowError as error:
        raise ValidationError(field, OUT_OF_RANGE) from error
    # NOTE: the stores write times with strftime("%Y"), which drops the leading zeros of a year
    # before 1000; a four-digit year keeps the keys readable and their order lexical.
    if not EARLIEST <= instant <= LATEST:
        raise ValidationError(field, OUT_OF_RANGE)
    return instant


def date_in_range(day: date, field: str) -> date:
    """Return an all-day event's date, refusing one outside the dates the product keeps.

    Raises:
        ValidationError: naming ``field`` when the date is before 1900-01-01 or after 3000-01-01.
    """
    if not EARLIEST.date() <= day <= LATEST.date():
        raise ValidationError(field, DATE_OUT_OF_RANGE)
    return day


def event_times(event: dict[str, Any]) -> EventTimes:
    """Return when a Graph event happens, all-day events as dates.

    Raises:
        ValidationError: when the event's ``start`` or ``end`` is not a date-time, or is one
            outside the years 1900 to 2999 (for an all-day event, a date outside them).
    """
    try:
        return _event_times(event)
    except OverflowError as error:
        field = "end"
        raise ValidationError(field, OUT_OF_RANGE) from error


def _event_times(event: dict[str, Any]) -> EventTimes:
    start = parse_instant(event.get("start"), "start")
    end = parse_instant(event.get("end"), "end")
    zone_name = str(event.get("originalStartTimeZone") or _zone_name(event.get("start")))
    if not event.get("isAllDay"):
        start, end = in_range(start, "start"), in_range(end, "end")
        return EventTimes(start=start, end=max(end, start), zone=zone_name)
    first = date_in_range(all_day_date(event.get("start"), zone_name, "start"), "start")
    last = all_day_date(event.get("end"), zone_name, "end")
    after = date_in_range(max(last, first + timedelta(days=1)), "end")
    return EventTimes(
        start=_midnight(first),
        end=_midnight(after),
        zone=zone_name,
        all_day=True,
        start_date=first,
        end_date=after,
    )


def all_day_date(value: Any, zone_name: str | None, field: str = "start") -> date:
    """Return the date an all-day boundary stands for, in either form Graph gives it.

    Raises:
        ValidationError: when the value is not a date-time.
    """
    text = value.get("dateTime") if isinstance(value, dict) else value
    instant = parse_instant(value, field)
    written = datetime.fromisoformat(str(text).strip())
    if written.tzinfo is None and written.time() == time(0):
        # Midnight as written, in the zone it was asked in: the date itself.
        return written.date()
    own = zone_of(zone_name) if zone_name else None
    if own is None:
        # An unknown zone: the nearest midnight is the boundary.
        return (instant + timedelta(hours=12)).date()
    return instant.astimezone(own).date() if _is_midnight(instant, own) else _nearest(instant, own)


def occurrence_anchor(event: dict[str, Any], times: EventTimes) -> str:
    """Return what identifies an instance within its series: its original start.

    A timed occurrence is named by its original start instant in UTC; an all-day one by its
    original date (BR-05). A single event, or an instance without ``originalStart``, by its start.

    Raises:
        ValidationError: when ``originalStart`` is not a date-time UTC can hold.
    """
    original = event.get("originalStart")
    if not original:
        return times.start_date.isoformat() if times.start_date else _stamp(times.start)
    if not times.all_day:
        return _stamp(parse_instant(original, "originalStart"))
    try:
        return all_day_date(original, times.zone, "originalStart").isoformat()
    except OverflowError as error:
        field = "originalStart"
        raise ValidationError(field, OUT_OF_RANGE) from error


def _zone_name(value: Any) -> str:
    return str(value.get("timeZone") or "UTC") if isinstance(value, dict) else "UTC"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _is_midnight(instant: datetime, zone: tzinfo) -> bool:
    return instant.astimezone(zone).time() == time(0)


def _nearest(instant: datetime, zone: tzinfo) -> date:
    local = instant.astimezone(zone).replace(tzinfo=None)
    return (local + timedelta(hours=12)).date()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
