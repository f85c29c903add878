"""Parse six-field NCRONTAB timer schedules and compute their next occurrence in UTC.

Azure Functions schedules read ``{second} {minute} {hour} {day} {month} {day-of-week}``.
croniter also accepts six fields but reads the *last* one as seconds, so a schedule is rewritten
with its seconds field moved to the end before croniter sees it. Like NCrontab, a schedule that
restricts both the day of the month and the day of the week fires only on days that match both.

Known limitations: TimeSpan schedules (``"00:05:00"``, App Service plans only) and time zones
(``WEBSITE_TIME_ZONE``) are not supported; every schedule runs in UTC, as on Flex Consumption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from devstack.host.errors import HostConfigError

NCRONTAB_FIELDS = ("second", "minute", "hour", "day", "month", "day-of-week")
_VALUE = r"(?:\d+|[a-z]{3})"
_ITEM = rf"(?:\*|{_VALUE}(?:-{_VALUE})?)(?:/\d+)?"
_FIELD = re.compile(rf"^{_ITEM}(?:,{_ITEM})*$", re.IGNORECASE)


def to_croniter(expression: str) -> str:
    """Rewrite an NCRONTAB expression into croniter's order, seconds last.

    Raises:
        ValueError: The expression does not have six fields or a field uses unknown syntax.
    """
    fields = expression.split()
    if len(fields) != len(NCRONTAB_FIELDS):
        message = f"it has {len(fields)} fields; NCRONTAB needs 6: " + " ".join(
            f"{{{name}}}" for name in NCRONTAB_FIELDS
        )
        raise ValueError(message)
    for name, field in zip(NCRONTAB_FIELDS, fields, strict=True):
        if _FIELD.match(field) is None:
            message = f"its {name} field {field!r} is not NCRONTAB syntax"
            raise ValueError(message)
    second, *rest = fields
    return " ".join([*rest, second])


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated NCRONTAB schedule."""

    expression: str
    cron: str

    @classmethod
    def parse(cls, expression: str, *, function_name: str) -> Schedule:
        """Validate ``expression`` for the timer function ``function_name``.

        Raises:
            HostConfigError: The schedule is not a valid six-field NCRONTAB expression.
        """
        where = f"timer function {function_name!r} has an invalid schedule {expression!r}"
        try:
            cron = to_croniter(expression)
        except ValueError as error:
            message = f"{where}: {error}"
            raise HostConfigError(message) from error
        try:
            # day_or=False intersects day-of-month and day-of-week, as NCrontab does.
            croniter(cron, datetime.now(UTC), day_or=False).get_next(datetime)
        except (ValueError, KeyError) as error:
            message = f"{where}: a field is out of range or never matches ({error})"
            raise HostConfigError(message) from error
        return cls(expression=expression, cron=cron)

    def next_after(self, moment: datetime) -> datetime:
        """Return the first occurrence strictly after ``moment``, in UTC."""
        following: datetime = croniter(self.cron, moment, day_or=False).get_next(datetime)
        return following.astimezone(UTC)
