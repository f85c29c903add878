"""Unit tests for NCRONTAB schedule parsing and the conversion to croniter's field order."""

from datetime import UTC, datetime

import pytest

from devstack.host.errors import HostConfigError
from devstack.host.ncrontab import Schedule, to_croniter


def test_ncrontab_to_croniter_moves_seconds_to_the_end():
    """The NCRONTAB seconds field becomes croniter's trailing seconds field."""
    # GIVEN a schedule at second 5 of every fifteenth minute
    expression = "5 */15 * * * *"

    # WHEN it is converted
    converted = to_croniter(expression)

    # THEN the seconds field is last
    assert converted == "*/15 * * * * 5"


def test_ncrontab_every_second_schedule_fires_each_second():
    """'* * * * * *' is a valid schedule that fires every second."""
    # GIVEN the every-second schedule
    schedule = Schedule.parse("* * * * * *", function_name="tick")

    # WHEN the next slot after a whole second is asked for
    following = schedule.next_after(datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC))

    # THEN it is one second later
    assert following == datetime(2025, 1, 1, 12, 0, 1, tzinfo=UTC)


def test_ncrontab_seconds_field_is_not_read_as_minutes():
    """'0 */5 * * * *' fires every five minutes on the minute, not every five seconds."""
    # GIVEN the documented every-five-minutes example
    schedule = Schedule.parse("0 */5 * * * *", function_name="planner")

    # WHEN the next slot after 10:01:30 is asked for
    following = schedule.next_after(datetime(2025, 3, 4, 10, 1, 30, tzinfo=UTC))

    # THEN it is 10:05:00
    assert following == datetime(2025, 3, 4, 10, 5, 0, tzinfo=UTC)


def test_ncrontab_weekday_names_and_ranges_work():
    """Day-of-week ranges by number and by name give the same weekday slots."""
    # GIVEN two spellings of "09:30 on weekdays", starting from a Saturday
    by_number = Schedule.parse("0 30 9 * * 1-5", function_name="a")
    by_name = Schedule.parse("0 30 9 * * Mon-Fri", function_name="b")
    saturday = datetime(2025, 1, 4, 0, 0, tzinfo=UTC)

    # WHEN / THEN both fire next on Monday at 09:30 UTC
    monday = datetime(2025, 1, 6, 9, 30, tzinfo=UTC)
    assert by_number.next_after(saturday) == monday
    assert by_name.next_after(saturday) == monday


def test_ncrontab_day_and_weekday_both_must_match():
    """A schedule that restricts day of month and weekday fires only where both match."""
    # GIVEN "midnight on the 13th, if it is a Friday"
    schedule = Schedule.parse("0 0 0 13 * 5", function_name="friday13")

    # WHEN the next slot after 1 January 2025 is asked for
    following = schedule.next_after(datetime(2025, 1, 1, tzinfo=UTC))

    # THEN it is Friday 13 June 2025, not the 13th of January or the first Friday
    assert following == datetime(2025, 6, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("*/5 * * * *", "5 fields"),
        ("0 0 0 * * * 2030", "7 fields"),
        ("61 * * * * *", "out of range"),
        ("0 0 25 * * *", "out of range"),
        ("0 0 0 ? * *", "day field"),
        ("H * * * * *", "second field"),
        ("00:05:00", "1 fields"),
    ],
)
def test_ncrontab_invalid_schedules_name_the_function(expression, reason):
    """An invalid or non-six-field schedule raises HostConfigError naming function and cause."""
    # GIVEN / WHEN an invalid schedule is parsed / THEN the error names the function and reason
    with pytest.raises(HostConfigError, match="'planner'") as raised:
        Schedule.parse(expression, function_name="planner")
    assert reason in str(raised.value)
