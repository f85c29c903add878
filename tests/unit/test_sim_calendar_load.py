"""Unit tests for the simulator's calendar loader and recurrence, on made and real .ics files."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
import recurring_ical_events

from devstack.simulator.calendar import Calendar
from devstack.simulator.icsload import CalendarLoadError, load_file, load_ics

SAMPLE = [
    "ical.js/samples/daily_recur.ics",
    "ical.js/samples/day_long_recur_yearly.ics",
    "recurring-ical-events/issue_27_t2.ics",
    "ical.js/samples/rdate_exdate.ics",
    "ical.js/samples/recur_instances.ics",
    "ical.js/samples/recur_instances_finite.ics",
    "recurring-ical-events/daylight_saving_time.ics",
    "recurring-ical-events/issue_20_exdate_ignored.ics",
    "recurring-ical-events/issue_27_t1.ics",
    "recurring-ical-events/issue_28_rrule_with_UTC_endinginZ.ics",
    "recurring-ical-events/issue_48_daylight_aware_repeats.ics",
    "vobject/test_files/ruby_rrule.ics",
]
"""Real files with series (DST, EXDATE, moved occurrences, Outlook's zones), checked one by one."""

MADE = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:weekly-1
DTSTART;TZID=Europe/Berlin:20240325T090000
DTEND;TZID=Europe/Berlin:20240325T100000
RRULE:FREQ=WEEKLY;COUNT=4
EXDATE;TZID=Europe/Berlin:20240401T090000
SUMMARY:Weekly
ORGANIZER;CN=Ann:mailto:ann@vendor.example
ATTENDEE;CN=Cy:mailto:cy@customer.example
END:VEVENT
END:VCALENDAR
"""


def calendar_files(root: Path) -> list[Path]:
    """Every .ics file under the real calendar data."""
    return sorted((root / "calendar").rglob("*.ics"))


def test_load_ics_series_expands_in_its_zone_across_dst() -> None:
    """A weekly series keeps 09:00 Berlin time across the DST change and skips its EXDATE."""
    # GIVEN a weekly series starting the week before DST ends... and begins in Europe
    loaded = load_ics(MADE)
    calendar = Calendar()
    for event in loaded.events:
        calendar.put(event)

    # WHEN its instances in April are listed
    low = datetime(2024, 3, 20, tzinfo=UTC)
    found = calendar.instances(low, low + timedelta(days=40))

    # THEN there are three (one excluded), at 08:00Z before the change and 07:00Z after
    starts = [i.start.astimezone(UTC).strftime("%m-%d %H:%M") for i in found]
    assert starts == ["03-25 08:00", "04-08 07:00", "04-15 07:00"]
    assert found[0].event.data["attendees"][0]["emailAddress"]["address"] == "cy@customer.example"


def test_load_ics_refuses_text_that_is_not_icalendar() -> None:
    """Bytes that are not iCalendar are refused with a message saying so."""
    # GIVEN / WHEN / THEN loading plain text is refused clearly
    with pytest.raises(CalendarLoadError, match="not an iCalendar document"):
        load_ics(b"hello, this is not a calendar")


def test_load_file_every_real_calendar_loads_or_is_refused_clearly(realdata: Path) -> None:
    """Every real .ics file either loads or is refused with a message; none crashes the loader."""
    # GIVEN every real calendar file
    files = calendar_files(realdata)
    assert len(files) > 300
    loaded, reasons = 0, []

    # WHEN each is loaded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            try:
                result = load_file(path)
            except CalendarLoadError as error:
                reasons.append(str(error).strip())
                continue
            loaded += 1
            assert not isinstance(result, list)
            assert result.events, path

    # THEN most load and the rest were refused, each with a reason
    assert loaded + len(reasons) == len(files)
    assert loaded > len(reasons)
    assert all(reasons)


def _library_starts(
    raw: bytes, uid: str, low: datetime, high: datetime, all_day: bool
) -> list[Any]:
    found = []
    expanded = recurring_ical_events.of(icalendar.Calendar.from_ical(raw)).between(low, high)
    for component in expanded:
        if str(component.get("UID")) != uid:
            continue
        start = component.decoded("DTSTART")
        if isinstance(start, datetime):
            start = (start if start.tzinfo else start.replace(tzinfo=UTC)).astimezone(UTC)
            found.append(start.date() if all_day else start)
        else:
            found.append(start)
    return sorted(found)


@pytest.mark.parametrize("name", SAMPLE)
def test_recurrence_sample_matches_recurring_ical_events(realdata: Path, name: str) -> None:
    """The simulator's occurrences of real series equal recurring-ical-events' expansion."""
    # GIVEN a real calendar file with series, loaded into a simulated calendar
    path = realdata / "calendar" / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_file(path)
        raw = path.read_bytes()
        assert not isinstance(loaded, list)
        calendar = Calendar()
        for event in loaded.events:
            calendar.put(event)
        series = [event for event in loaded.events if event.recurrence is not None]
        assert series, name

        for event in series:
            # WHEN its first 400 days are expanded by both
            low, high = event.start, event.start + timedelta(days=400)
            ours = sorted(
                i.start.date() if event.all_day else i.start.astimezone(UTC)
                for i in calendar.expand(event, low, high)
                if low <= i.start < high
            )
            theirs = _library_starts(raw, event.ical_uid, low, high, event.all_day)

            # THEN both found occurrences, and the same ones over the whole window: dates for
            # an all-day series, UTC instants for a timed one
            assert ours, (name, event.ical_uid)
            assert ours == theirs, (name, event.ical_uid)
            if event.all_day:
                assert all(type(s) is date for s in ours)
            else:
                assert all(isinstance(s, datetime) and s.utcoffset() == timedelta(0) for s in ours)
