"""Unit tests for shared.sync.schedule: NCRONTAB checks at start-up and sync slots (BR-15)."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.errors import ConfigError, InvalidJobError
from shared.sync.schedule import (
    SYNC_PERIOD,
    fire_times,
    parse_slot,
    require_at_most_once_per,
    slot_of,
    slot_text,
    to_croniter,
)


def test_to_croniter_moves_seconds_last() -> None:
    """croniter reads seconds as the last field, NCRONTAB as the first."""
    # GIVEN / WHEN / THEN
    assert to_croniter("0 */10 * * * *") == "*/10 * * * * 0"


def test_to_croniter_refuses_five_fields() -> None:
    """A five-field (Unix cron) schedule is refused with the field names NCRONTAB expects."""
    # GIVEN a five-field schedule
    # WHEN it is converted
    with pytest.raises(ConfigError) as raised:
        to_croniter("*/10 * * * *")

    # THEN the message names the schedule and the six fields
    assert "'*/10 * * * *' has 5 fields" in str(raised.value)
    assert "{second}" in str(raised.value)


def test_fire_times_of_the_sync_schedule_are_ten_minutes_apart() -> None:
    """The product's schedule fires on every tenth minute, at second zero, in UTC."""
    # GIVEN the sync schedule and a start
    start = datetime(2025, 6, 1, 12, 3, 7, tzinfo=UTC)

    # WHEN its next fire times are computed
    times = fire_times("0 */10 * * * *", 3, start)

    # THEN they are 12:10, 12:20, 12:30 UTC
    assert times == [datetime(2025, 6, 1, 12, m, tzinfo=UTC) for m in (10, 20, 30)]


@pytest.mark.parametrize("schedule", ["0 */10 * * * *", "30 5/10 * * * *", "0 0 * * * *"])
def test_require_at_most_once_per_accepts_schedules_no_faster_than_the_period(
    schedule: str,
) -> None:
    """Every-10-minutes (at any second) and slower schedules pass."""
    # GIVEN / WHEN / THEN no error
    require_at_most_once_per(schedule, SYNC_PERIOD, name="SYNC_SCHEDULE")


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("* */10 * * * *", "1 s"),
        ("*/30 */10 * * * *", "30 s"),
        ("0 */5 * * * *", "300 s"),
        ("0 0,5 * * * *", "300 s"),
        ("0 * * * * *", "60 s"),
    ],
)
def test_require_at_most_once_per_refuses_faster_schedules(schedule: str, gap: str) -> None:
    """A schedule firing more than once per slot fails, naming setting, schedule and rule."""
    # GIVEN a schedule that fires too often
    # WHEN it is checked
    with pytest.raises(ConfigError) as raised:
        require_at_most_once_per(schedule, SYNC_PERIOD, name="SYNC_SCHEDULE")

    # THEN the message names the setting, the schedule, the gap and the rule
    message = str(raised.value)
    assert message.startswith(f"SYNC_SCHEDULE: schedule {schedule!r} fires {gap} apart")
    assert "at most once every 600 s" in message


def test_require_at_most_once_per_hints_at_the_seconds_field() -> None:
    """The BR-15 mistake, '*' in the seconds field, gets a hint on how to write it."""
    # GIVEN / WHEN
    with pytest.raises(ConfigError) as raised:
        require_at_most_once_per("* */10 * * * *", SYNC_PERIOD, name="SYNC_SCHEDULE")

    # THEN
    assert "seconds field must be one number" in str(raised.value)


@pytest.mark.parametrize("schedule", ["0 61 * * * *", "x */10 * * * *", "0 0 0 31 2 *", "00:10:00"])
def test_require_at_most_once_per_refuses_unreadable_schedules(schedule: str) -> None:
    """Out-of-range values, unknown syntax, dates that never come and TimeSpans are refused."""
    # GIVEN / WHEN
    with pytest.raises(ConfigError) as raised:
        require_at_most_once_per(schedule, SYNC_PERIOD, name="SYNC_SCHEDULE")

    # THEN the setting and the schedule are named
    assert str(raised.value).startswith(f"SYNC_SCHEDULE: schedule {schedule!r}")


def test_sync_trigger_module_checks_its_schedule_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the sync triggers checks SYNC_SCHEDULE, so a bad one stops start-up."""
    # GIVEN the checker replaced by one that records what it was asked
    import shared.sync.schedule as schedule_module
    import shared.triggers.sync as sync_triggers

    seen: list[tuple[str, timedelta, str]] = []

    def record(expression: str, period: timedelta, *, name: str) -> None:
        seen.append((expression, period, name))

    monkeypatch.setattr(schedule_module, "require_at_most_once_per", record)

    # WHEN the module is imported again
    importlib.reload(sync_triggers)

    # THEN it checked its own schedule against the 10-minute period
    assert seen == [("0 */10 * * * *", SYNC_PERIOD, "SYNC_SCHEDULE")]
    monkeypatch.undo()
    importlib.reload(sync_triggers)


def test_slot_of_floors_to_ten_minutes_in_utc() -> None:
    """A moment's slot is its UTC time floored to 10 minutes, whatever its offset."""
    # GIVEN a moment at 12:17:59.5 in UTC+02:00
    moment = datetime(2025, 6, 1, 14, 17, 59, 500_000, tzinfo=timezone(timedelta(hours=2)))

    # WHEN / THEN
    assert slot_of(moment) == "2025-06-01T12:10:00+00:00"
    assert slot_of(datetime(2025, 6, 1, 12, 10, tzinfo=UTC)) == "2025-06-01T12:10:00+00:00"


def test_slot_of_refuses_naive_time() -> None:
    """A naive datetime has no defined slot."""
    # GIVEN / WHEN / THEN
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_of(datetime(2025, 6, 1, 12, 0))  # noqa: DTZ001 - the case under test


def test_parse_slot_reads_iso_time_with_offset() -> None:
    """A slot round-trips through its text form, in UTC."""
    # GIVEN a slot time
    slot = datetime(2025, 6, 1, 12, 10, tzinfo=UTC)

    # WHEN / THEN
    assert parse_slot(slot_text(slot)) == slot
    assert parse_slot("2025-06-01T14:10:00+02:00") == slot


@pytest.mark.parametrize(
    "value",
    [
        None,
        12,
        "",
        "yesterday",
        "2025-06-01T12:10:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_parse_slot_refuses_bad_values_naming_the_field(value: object) -> None:
    """Missing, unreadable, offset-less and out-of-range slots are refused naming the field."""
    # GIVEN / WHEN
    with pytest.raises(InvalidJobError) as raised:
        parse_slot(value)

    # THEN
    assert str(raised.value).startswith("slot: must")


@pytest.mark.parametrize(
    "value",
    ["2025-06-01T12:15:00+00:00", "2025-06-01T12:10:00.000001+00:00", "2025-06-01T12:19:59Z"],
)
def test_parse_slot_reads_a_time_inside_a_slot_as_its_start(value: str) -> None:
    """A job or claim naming a time inside a slot names that slot, so it cannot claim twice."""
    # GIVEN / WHEN / THEN
    assert parse_slot(value) == datetime(2025, 6, 1, 12, 10, tzinfo=UTC)
