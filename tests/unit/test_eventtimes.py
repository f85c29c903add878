"""Unit tests for shared.sync.eventtimes: UTC instants, all-day dates (BR-05), anchors."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.errors import ValidationError
from shared.sync.eventtimes import event_times, names_one_instant, occurrence_anchor, zone_of

ZONES = ["Pacific Standard Time", "Singapore Standard Time", "America/Los_Angeles", "Asia/Tokyo"]


def all_day(start: str, end: str, zone: str, **extra: Any) -> dict[str, Any]:
    """A Graph all-day event as asked for in UTC."""
    return {
        "isAllDay": True,
        "originalStartTimeZone": zone,
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
        **extra,
    }


@pytest.mark.parametrize("zone", ZONES)
def test_event_times_all_day_midnight_form_is_one_date(zone: str) -> None:
    """Midnight-to-midnight all-day times give one date, whatever the event's zone (BR-05)."""
    # GIVEN an all-day event as Graph documents it for a UTC request
    event = all_day("2017-10-12T00:00:00.0000000", "2017-10-13T00:00:00.0000000", zone)

    # WHEN its times are read
    times = event_times(event)

    # THEN it is the one day 2017-10-12, end exclusive
    assert (times.start_date, times.end_date) == (date(2017, 10, 12), date(2017, 10, 13))
    assert times.all_day is True
    assert times.zone == zone


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("Pacific Standard Time", "2017-10-12T07:00:00.0000000", "2017-10-13T07:00:00.0000000"),
        ("Singapore Standard Time", "2017-10-11T16:00:00.0000000", "2017-10-12T16:00:00.0000000"),
        ("Pacific/Kiritimati", "2017-10-11T10:00:00.0000000", "2017-10-12T10:00:00.0000000"),
    ],
)
def test_event_times_all_day_instant_form_gives_the_same_date(
    zone: str, start: str, end: str
) -> None:
    """All-day times given as the instants of the zone's midnights give the same date (BR-05)."""
    # GIVEN an all-day event whose times are its own zone's midnights in UTC
    event = all_day(start, end, zone)

    # WHEN its times are read
    times = event_times(event)

    # THEN it is still the one day 2017-10-12, never the day before and never two days
    assert (times.start_date, times.end_date) == (date(2017, 10, 12), date(2017, 10, 13))


def test_event_times_all_day_with_equal_ends_is_still_one_day() -> None:
    """An all-day event whose end equals its start is one day, not zero."""
    # GIVEN an all-day event with an end equal to its start
    event = all_day("2024-02-29T00:00:00", "2024-02-29T00:00:00", "UTC")

    # WHEN its times are read
    times = event_times(event)

    # THEN it covers exactly its start date
    assert (times.start_date, times.end_date) == (date(2024, 2, 29), date(2024, 3, 1))


def test_event_times_timed_event_is_utc_instants_with_zone() -> None:
    """A timed event is stored as UTC instants with its original zone name."""
    # GIVEN a timed event asked for in UTC, created in Berlin
    event = {
        "originalStartTimeZone": "W. Europe Standard Time",
        "start": {"dateTime": "2024-07-01T08:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-07-01T09:30:00.0000000", "timeZone": "UTC"},
    }

    # WHEN its times are read
    times = event_times(event)

    # THEN the instants are UTC and the zone name is kept
    assert times.start == datetime(2024, 7, 1, 8, tzinfo=UTC)
    assert times.end == datetime(2024, 7, 1, 9, 30, tzinfo=UTC)
    assert (times.zone, times.all_day, times.start_date) == ("W. Europe Standard Time", False, None)


def test_event_times_refuses_missing_start() -> None:
    """An event without a readable start is refused naming the field."""
    # GIVEN an event without start
    event = {"end": {"dateTime": "2024-07-01T09:30:00", "timeZone": "UTC"}}

    # WHEN / THEN reading its times names the start
    with pytest.raises(ValidationError) as error:
        event_times(event)
    assert error.value.field == "start"


def test_occurrence_anchor_all_day_exception_matches_by_date() -> None:
    """An all-day exception whose originalStart is 07:00Z is matched to its occurrence's date."""
    # GIVEN the BR-05 recurring variant: originalStart 07:00Z, start 00:00 UTC
    event = all_day(
        "2018-06-06T00:00:00.0000000",
        "2018-06-07T00:00:00.0000000",
        "Pacific Standard Time",
        type="exception",
        originalStart="2018-06-06T07:00:00Z",
    )

    # WHEN its anchor is taken
    anchor = occurrence_anchor(event, event_times(event))

    # THEN it is the date, as an occurrence of that date would be anchored
    occurrence = all_day(
        "2018-06-06T00:00:00.0000000", "2018-06-07T00:00:00.0000000", "Pacific Standard Time"
    )
    assert anchor == "2018-06-06"
    assert occurrence_anchor(occurrence, event_times(occurrence)) == anchor


def test_occurrence_anchor_moved_exception_keeps_original_start() -> None:
    """A timed exception moved to another hour is anchored by its original start instant."""
    # GIVEN an exception moved from 09:00 to 15:00 UTC
    event = {
        "type": "exception",
        "originalStart": "2024-05-06T09:00:00Z",
        "start": {"dateTime": "2024-05-06T15:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2024-05-06T16:00:00", "timeZone": "UTC"},
    }

    # WHEN its anchor is taken
    anchor = occurrence_anchor(event, event_times(event))

    # THEN it is the original start, so the record stays the same
    assert anchor == "2024-05-06T09:00:00Z"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"start": "0001-01-01T00:00:00+05:00", "end": "0001-01-01T06:00:00+05:00"}, "start"),
        (
            {
                "start": {"dateTime": "9999-12-31T10:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "9999-12-31T23:30:00", "timeZone": "Hawaiian Standard Time"},
            },
            "end",
        ),
        (all_day("9999-12-31T00:00:00", "9999-12-31T00:00:00", "UTC"), "start"),
    ],
)
def test_event_times_beyond_what_utc_can_hold_is_a_validation_error(
    event: dict[str, Any], field: str
) -> None:
    """Times that overflow in UTC (or past the last day) are refused by field, never overflow."""
    # GIVEN an event whose times fall outside years 1 to 9999 once in UTC
    # WHEN / THEN reading them raises ValidationError naming the field
    with pytest.raises(ValidationError) as raised:
        event_times(event)
    assert raised.value.field == field


def test_occurrence_anchor_unreadable_original_start_is_a_validation_error() -> None:
    """An occurrence whose originalStart is not a date-time is refused, so sync can drop it."""
    # GIVEN a timed occurrence with a garbled originalStart
    event = {
        "start": {"dateTime": "2026-03-03T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-03T11:00:00", "timeZone": "UTC"},
        "originalStart": "not a time",
    }

    # WHEN / THEN its anchor cannot be read
    with pytest.raises(ValidationError) as raised:
        occurrence_anchor(event, event_times(event))
    assert raised.value.field == "originalStart"


@pytest.mark.parametrize(
    "name",
    [
        "America",
        "Etc",
        "Europe",
        "../x",
        "Europe//Paris",
        "Europe/Paris/",
        "/etc/localtime",
        "localtime",
        "zone.tab",
        "right/UTC",
        "x\x00y",
        pytest.param("a" * 300, id="name-too-long"),
    ],
)
def test_zone_of_name_that_is_no_zone_is_unknown(name: str) -> None:
    """A folder, a path, a data file or an odd name of the zone database is an unknown zone."""
    # GIVEN a name that reaches the zone database but names no zone in it
    # WHEN it is read
    zone = zone_of(name)

    # THEN it is unknown, never an error
    assert zone is None


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("America/New_York", "America/New_York"),
        (" Europe/Paris ", "Europe/Paris"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("US/Eastern", "US/Eastern"),
    ],
)
def test_zone_of_iana_and_windows_names_are_read(name: str, key: str) -> None:
    """An IANA name (or an old link to one) and a Windows name give their zone."""
    # GIVEN a zone name as a caller or Graph writes it
    # WHEN it is read
    zone = zone_of(name)

    # THEN it is the zone of the database it names
    assert zone == ZoneInfo(key)


def test_event_times_all_day_in_a_zone_folder_is_read_by_the_nearest_midnight() -> None:
    """A synced all-day event whose zone is a folder name is dated, not an error for the job."""
    # GIVEN an all-day event given as instants, in a zone named after a folder of the database
    event = all_day("2026-03-10T05:00:00", "2026-03-11T05:00:00", "America")

    # WHEN its times are read
    times = event_times(event)

    # THEN the zone is unknown, so the nearest midnights give its one day
    assert (times.start_date, times.end_date) == (date(2026, 3, 10), date(2026, 3, 11))


def timed(start: str, end: str) -> dict[str, Any]:
    """A Graph timed event as asked for in UTC."""
    return {
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
    }


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (timed("0001-01-01T00:00:00", "0001-01-01T01:00:00"), "start"),
        (timed("1899-12-31T23:59:59", "1900-01-01T01:00:00"), "start"),
        (timed("2999-12-31T23:00:00", "3000-01-01T00:00:01"), "end"),
        (all_day("0001-01-01T00:00:00", "0001-01-02T00:00:00", "UTC"), "start"),
        (all_day("2999-12-31T00:00:00", "3000-01-02T00:00:00", "UTC"), "end"),
    ],
    ids=["year-1", "before-1900", "after-2999", "all-day-year-1", "all-day-after-2999"],
)
def test_event_times_outside_the_years_kept_is_a_validation_error(
    event: dict[str, Any], field: str
) -> None:
    """A time outside 1900 to 2999, which the stores cannot key, is refused naming its field."""
    # GIVEN a Graph event with a time outside the years the product keeps
    # WHEN / THEN reading its times raises ValidationError naming the field
    with pytest.raises(ValidationError) as raised:
        event_times(event)
    assert raised.value.field == field


def test_event_times_at_the_edges_of_the_years_kept_is_read() -> None:
    """Times exactly on the first and the last moment kept are read like any other."""
    # GIVEN a timed and an all-day event that span the whole range kept
    moments = timed("1900-01-01T00:00:00", "3000-01-01T00:00:00")
    days = all_day("1900-01-01T00:00:00", "3000-01-01T00:00:00", "UTC")

    # WHEN their times are read
    read, dated = event_times(moments), event_times(days)

    # THEN both keep their bounds
    assert (read.start, read.end) == (
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(3000, 1, 1, tzinfo=UTC),
    )
    assert (dated.start_date, dated.end_date) == (date(1900, 1, 1), date(3000, 1, 1))


NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("wall", "zone", "once"),
    [
        ("2026-11-01T01:30", NEW_YORK, False),
        ("2026-03-08T02:30", NEW_YORK, False),
        ("2026-09-06T00:00", ZoneInfo("America/Santiago"), False),
        ("2026-11-01T00:59", NEW_YORK, True),
        ("2026-11-01T02:00", NEW_YORK, True),
        ("2026-03-08T03:00", NEW_YORK, True),
        ("2026-07-01T09:00", NEW_YORK, True),
        ("2026-11-01T01:30", UTC, True),
    ],
    ids=[
        "autumn-fold",
        "spring-gap",
        "midnight-gap",
        "before-fold",
        "after-fold",
        "after-gap",
        "summer",
        "utc",
    ],
)
def test_names_one_instant_is_false_in_a_fold_or_a_gap(wall: str, zone: tzinfo, once: bool) -> None:
    """A wall time the clocks repeat or skip names no single instant; any other one does."""
    # GIVEN a wall-clock time in a zone, around a change of its clocks or away from one
    # WHEN it is asked whether it happens exactly once
    answer = names_one_instant(datetime.fromisoformat(wall), zone)

    # THEN only a time that is neither repeated nor skipped does
    assert answer is once
