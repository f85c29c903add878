"""Timer schedules and sync slots.

An Azure Functions timer reads a six-field NCRONTAB schedule, ``{second} {minute} {hour} {day}
{month} {day-of-week}``, in UTC. A wrong schedule is easy to write and silent in effect: with
``* */10 * * * *`` the fan-out runs every second of every tenth minute (BR-15, and
Azure/azure-functions-host#10581). :func:`require_at_most_once_per` refuses such a schedule at
start-up. A *slot* names one period of the sync schedule: the UTC time floored to the period,
as an ISO-8601 string; the fan-out enqueues at most one job per connection per slot.

Known limitations: the check looks at the first :data:`FIRES_CHECKED` fire times after a fixed
moment, so a schedule that only fires too often on a rare date (say, every second on 29
February) passes; TimeSpan schedules (``"00:10:00"``) are not understood and are refused.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from croniter import croniter

from shared.errors import ConfigError, InvalidJobError

SYNC_PERIOD = timedelta(minutes=10)
"""The intended period of the sync timer: one slot."""

FIRES_CHECKED = 200
_FIELDS = ("second", "minute", "hour", "day", "month", "day-of-week")
_CHECK_FROM = datetime(2024, 1, 1, tzinfo=UTC)


def to_croniter(expression: str) -> str:
    """Rewrite a six-field NCRONTAB expression in croniter's order, with seconds last.

    Raises:
        ConfigError: when the expression does not have six fields.
    """
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        msg = f"schedule {expression!r} has {len(fields)} fields; NCRONTAB needs 6: " + " ".join(
            f"{{{name}}}" for name in _FIELDS
        )
        raise ConfigError(msg)
    second, *rest = fields
    return " ".join([*rest, second])


def fire_times(expression: str, count: int, start: datetime = _CHECK_FROM) -> list[datetime]:
    """Return the first ``count`` fire times of a schedule strictly after ``start``, in UTC.

    Raises:
        ConfigError: when the expression is not valid NCRONTAB or never fires.
    """
    cron = to_croniter(expression)
    try:
        # day_or=False intersects day-of-month and day-of-week, as NCrontab does.
        times = croniter(cron, start, day_or=False)
        return [times.get_next(datetime).astimezone(UTC) for _ in range(count)]
    except (ValueError, KeyError) as error:
        msg = f"schedule {expression!r} is not valid NCRONTAB or never fires ({error})"
        raise ConfigError(msg) from error


def require_at_most_once_per(expression: str, period: timedelta, *, name: str) -> None:
    """Check that a timer schedule fires at most once per ``period``.

    Raises:
        ConfigError: naming the setting, its schedule and the rule, when fire times come closer
            together than ``period`` or the schedule cannot be read.
    """
    try:
        times = fire_times(expression, FIRES_CHECKED)
    except ConfigError as error:
        msg = f"{name}: {error}"
        raise ConfigError(msg) from error
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    shortest = min(gaps)
    if shortest < period:
        msg = (
            f"{name}: schedule {expression!r} fires {shortest.total_seconds():g} s apart; "
            f"rule: at most once every {period.total_seconds():g} s"
        )
        if not expression.split(maxsplit=1)[0].isdigit():
            msg += " (its seconds field must be one number, as in '0 */10 * * * *')"
        raise ConfigError(msg)


def slot_of(moment: datetime, period: timedelta = SYNC_PERIOD) -> str:
    """Return the slot holding ``moment``: its UTC time floored to ``period``, ISO-8601.

    Raises:
        ValueError: when ``moment`` is naive.
    """
    if moment.tzinfo is None:
        msg = "moment must be timezone-aware"
        raise ValueError(msg)
    utc = moment.astimezone(UTC)
    floored = utc - (utc - _CHECK_FROM) % period
    return floored.isoformat()


def parse_slot(value: object, field: str = "slot") -> datetime:
    """Read a slot from a job or a claim: an ISO-8601 time with a UTC offset, as its slot's start.

    A time inside a slot reads as the start of that slot, so ``12:15`` and ``12:10:00.000001``
    are the 12:10 slot and can never claim a connection a second time within it.

    Raises:
        InvalidJobError: naming ``field`` when the value is not such a time, or UTC cannot hold
            it (year 1 at +01:00).
    """
    if not isinstance(value, str):
        msg = f"{field}: must be an ISO-8601 time string with a UTC offset"
        raise InvalidJobError(msg)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        msg = f"{field}: must be an ISO-8601 time string with a UTC offset"
        raise InvalidJobError(msg) from error
    if moment.tzinfo is None:
        msg = f"{field}: must carry a UTC offset"
        raise InvalidJobError(msg)
    try:
        utc = moment.astimezone(UTC)
        return utc - (utc - _CHECK_FROM) % SYNC_PERIOD
    except OverflowError as error:
        msg = f"{field}: must be a time UTC can hold, from year 1 to 9999"
        raise InvalidJobError(msg) from error


def slot_text(moment: datetime) -> str:
    """Return the canonical text of a slot time, as stored and sent."""
    return moment.astimezone(UTC).isoformat()
