"""When an automatic email may go out: do-not-disturb hours and the next day of a daily limit.

Everything here is plain arithmetic on aware datetimes with :mod:`zoneinfo` zones, so a day is
the sender's local calendar day (23 or 25 hours long across a daylight saving change) and a
do-not-disturb window ends at its local wall-clock time on whichever day it ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from shared.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import tzinfo

MAX_DELAY = timedelta(days=7) - timedelta(seconds=1)
"""Storage Queues keep a message invisible for at most 7 days."""
SENDER = "sender"
RECIPIENT = "recipient"


@dataclass(frozen=True, slots=True)
class DoNotDisturb:
    """Local hours in which automatic emails wait; ``start`` after ``end`` spans midnight."""

    start: time
    end: time
    zone_of: str = SENDER

    def as_json(self) -> dict[str, str]:
        """Return the window as the tenant settings show it."""
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "timeZone": self.zone_of,
        }


def parse_do_not_disturb(value: object) -> DoNotDisturb | None:
    """Check a ``doNotDisturb`` setting: ``{"start": "HH:MM", "end": "HH:MM", "timeZone"}``.

    Raises:
        ValidationError: naming the part that breaks a rule.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"start", "end", "timeZone"}:
        field = "doNotDisturb"
        raise ValidationError(field, "must be an object with start, end and timeZone")
    start = _clock(value, "start")
    end = _clock(value, "end")
    if start == end:
        field = "doNotDisturb.end"
        raise ValidationError(field, "must differ from start")
    whose = value.get("timeZone", SENDER)
    if whose not in (SENDER, RECIPIENT):
        field = "doNotDisturb.timeZone"
        raise ValidationError(field, "must be sender or recipient")
    return DoNotDisturb(start=start, end=end, zone_of=str(whose))


_CLOCK = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")


def _clock(value: Mapping[str, object], name: str) -> time:
    text = value.get(name)
    parsed = None
    if isinstance(text, str) and _CLOCK.fullmatch(text):
        parsed = time(int(text[:2]), int(text[3:]))
    if parsed is None:
        field = f"doNotDisturb.{name}"
        raise ValidationError(field, "must be a local time such as 21:30")
    return parsed


def quiet_until(now: datetime, zone: tzinfo, window: DoNotDisturb | None) -> datetime | None:
    """Return when the do-not-disturb window around ``now`` ends, or None outside it."""
    if window is None:
        return None
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    spans_midnight = window.start > window.end
    if spans_midnight:
        inside = wall >= window.start or wall < window.end
    else:
        inside = window.start <= wall < window.end
    if not inside:
        return None
    end_day = local.date()
    if spans_midnight and wall >= window.start:
        end_day += timedelta(days=1)
    return datetime.combine(end_day, window.end, tzinfo=zone).astimezone(UTC)


def local_day(now: datetime, zone: tzinfo) -> str:
    """Return the local calendar day of ``now`` as ``YYYY-MM-DD``."""
    return now.astimezone(zone).date().isoformat()


def next_day_start(now: datetime, zone: tzinfo) -> datetime:
    """Return the next local midnight after ``now``, as a UTC instant."""
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=zone).astimezone(UTC)


def delay_seconds(now: datetime, until: datetime) -> int:
    """Return whole seconds from ``now`` to ``until`` (at least 1), capped at the queue's 7 days."""
    wait = min(until - now, MAX_DELAY)
    return max(1, int(wait.total_seconds() + 0.999))
