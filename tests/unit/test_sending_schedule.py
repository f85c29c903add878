"""Do-not-disturb windows and the next day of a daily limit, across midnight and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.errors import ValidationError
from shared.sending.schedule import (
    MAX_DELAY,
    DoNotDisturb,
    delay_seconds,
    local_day,
    next_day_start,
    parse_do_not_disturb,
    quiet_until,
)

NEW_YORK = ZoneInfo("America/New_York")
NIGHT = DoNotDisturb(start=time(22, 0), end=time(7, 0))


def test_quiet_until_spans_midnight_to_the_next_morning():
    """At 23:00 local, a 22:00-07:00 window ends at 07:00 the next local day."""
    # GIVEN 23:00 in New York on an ordinary winter day
    now = datetime(2026, 1, 14, 23, 0, tzinfo=NEW_YORK)

    # WHEN the window's end is asked for
    until = quiet_until(now, NEW_YORK, NIGHT)

    # THEN it is 07:00 New York time on the 15th, as a UTC instant
    assert until == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_quiet_until_after_midnight_ends_the_same_morning():
    """At 02:00 local, the window that began yesterday ends at 07:00 today."""
    # GIVEN 02:00 in New York
    now = datetime(2026, 1, 15, 2, 0, tzinfo=NEW_YORK)

    # WHEN / THEN it ends at 07:00 the same day
    assert quiet_until(now, NEW_YORK, NIGHT) == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_quiet_until_is_none_outside_the_window():
    """At 12:00 nothing waits."""
    # GIVEN noon
    now = datetime(2026, 1, 15, 12, 0, tzinfo=NEW_YORK)

    # WHEN / THEN the email may go now
    assert quiet_until(now, NEW_YORK, NIGHT) is None
    assert quiet_until(now, NEW_YORK, None) is None


def test_quiet_until_across_spring_forward_waits_one_hour_less():
    """On the night clocks go forward (8 March 2026), 22:00 to 07:00 lasts 8 hours, not 9."""
    # GIVEN 22:00 New York time on 7 March 2026 (EST); clocks go to EDT at 02:00 on the 8th
    now = datetime(2026, 3, 7, 22, 0, tzinfo=NEW_YORK)

    # WHEN the window's end is asked for
    until = quiet_until(now, NEW_YORK, NIGHT)

    # THEN it is 07:00 EDT (11:00 UTC), 8 hours of real time later
    assert until == datetime(2026, 3, 8, 11, 0, tzinfo=UTC)
    assert until - now.astimezone(UTC) == timedelta(hours=8)


def test_quiet_until_across_fall_back_waits_one_hour_more():
    """On the night clocks go back (1 November 2026), 22:00 to 07:00 lasts 10 hours."""
    # GIVEN 22:00 EDT on 31 October 2026
    now = datetime(2026, 10, 31, 22, 0, tzinfo=NEW_YORK)

    # WHEN / THEN the window ends at 07:00 EST, 12:00 UTC, 10 hours later
    until = quiet_until(now, NEW_YORK, NIGHT)
    assert until == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert until - now.astimezone(UTC) == timedelta(hours=10)


def test_next_day_start_is_local_midnight():
    """23:30 local on the 14th: the next day starts at local midnight, 30 minutes later."""
    # GIVEN 23:30 in New York, which is already the 15th in UTC
    now = datetime(2026, 1, 14, 23, 30, tzinfo=NEW_YORK)

    # WHEN the day and the next day's start are asked for
    day = local_day(now, NEW_YORK)
    start = next_day_start(now, NEW_YORK)

    # THEN the day is the local 14th and the next starts at 05:00 UTC on the 15th
    assert day == "2026-01-14"
    assert local_day(now, UTC) == "2026-01-15"
    assert start == datetime(2026, 1, 15, 5, 0, tzinfo=UTC)
    assert start - now.astimezone(UTC) == timedelta(minutes=30)


def test_next_day_start_on_the_short_day_of_spring_forward():
    """The day of 8 March 2026 in New York is 23 hours long; the next one starts at 04:00 UTC."""
    # GIVEN 00:30 on 8 March (EST), a day that loses an hour at 02:00
    now = datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK)

    # WHEN the next day's start is asked for
    start = next_day_start(now, NEW_YORK)

    # THEN it is midnight EDT on the 9th, 22.5 hours of real time later
    assert start == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert start - now.astimezone(UTC) == timedelta(hours=22, minutes=30)


def test_delay_seconds_is_capped_at_seven_days():
    """A queue message cannot stay invisible for more than 7 days."""
    # GIVEN a target 30 days out
    now = datetime(2026, 1, 1, tzinfo=UTC)

    # WHEN / THEN the delay stops just under 7 days, and is never below a second
    assert delay_seconds(now, now + timedelta(days=30)) == int(MAX_DELAY.total_seconds())
    assert delay_seconds(now, now - timedelta(hours=1)) == 1


def test_parse_do_not_disturb_checks_each_part():
    """Bad times, equal ends and unknown zones are refused naming the part."""
    # GIVEN / WHEN / THEN a good window parses and bad ones name their field
    window = parse_do_not_disturb({"start": "21:30", "end": "07:00", "timeZone": "recipient"})
    assert window == DoNotDisturb(time(21, 30), time(7, 0), "recipient")
    for value, field in (
        ({"start": "25:00", "end": "07:00"}, "doNotDisturb.start"),
        ({"start": "21:00", "end": "21:00"}, "doNotDisturb.end"),
        ({"start": "21:00", "end": "07:00", "timeZone": "mars"}, "doNotDisturb.timeZone"),
        ("21-7", "doNotDisturb"),
    ):
        with pytest.raises(ValidationError) as caught:
            parse_do_not_disturb(value)
        assert caught.value.field == field


@pytest.mark.parametrize("text", ["21.00", "2100", "21:00Z", "21:00+01", "24:00", "7:30", "21:60"])
def test_do_not_disturb_times_must_be_plain_local_hours_and_minutes(text):
    """Only HH:MM on a 24-hour clock is a local time; offsets and other spellings are refused."""
    with pytest.raises(ValidationError) as caught:
        parse_do_not_disturb({"start": text, "end": "07:00"})
    assert caught.value.field == "doNotDisturb.start"
