"""A real recurring .ics calendar synced by the product, checked against recurring-ical-events.

The file is a Zimbra export from ical.js's samples (../shared/realdata/calendar): a monthly
series on the first Tuesday at 10:00 Los Angeles time, with no end, so its occurrences cross
daylight-saving changes inside any window the product syncs.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import icalendar
import pytest
import recurring_ical_events

from tests.functional.test_calendar_sync import connected

if TYPE_CHECKING:
    from pathlib import Path

    from tests.functional.conftest import Tenant

pytestmark = [pytest.mark.stack, pytest.mark.realdata]

SERIES = "ical.js/samples/recur_instances.ics"
BACKFILL_DAYS = 120


def library_starts(raw: bytes, low: datetime, high: datetime) -> list[str]:
    """Occurrence starts of the file's series in ``[low, high)`` by the library, as UTC stamps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = recurring_ical_events.of(icalendar.Calendar.from_ical(raw)).between(low, high)
    starts = [component.decoded("DTSTART").astimezone(UTC) for component in found]
    return sorted(s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in starts if low <= s < high)


def test_real_recurring_calendar_occurrences_match_the_library(
    tenant: Tenant, realdata: Path
) -> None:
    """Each stored occurrence of a real series in a sample window is one the library expands."""
    # GIVEN a tenant syncing 120 days back, a company at the organiser's domain, and a user whose
    # calendar is loaded from the real file
    body = {"name": "Test tenant", "ownDomains": [tenant.domain], "backfillDays": BACKFILL_DAYS}
    tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body).raise_for_status()
    tenant.add_company("Mozilla", ["mozilla.com"])
    ann = connected(tenant, "ann")
    path = realdata / "calendar" / SERIES
    tenant.stack.sim.load_calendar_file(ann, path)

    # WHEN the product syncs the calendar
    tenant.sync()

    # THEN inside a sample window well within the synced one, the product stored exactly the
    # occurrences the library expands, at the same instants
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    low, high = today - timedelta(days=BACKFILL_DAYS - 20), today + timedelta(days=300)
    stored = [e for e in tenant.company_events("Mozilla") if not e["isAllDay"]]
    sample = sorted(str(e["start"]) for e in stored if low <= _instant(e["start"]) < high)
    expected = library_starts(path.read_bytes(), low, high)
    assert len(expected) >= 10
    assert sample == expected
    assert {e["subject"] for e in stored} == {"Crazy Event Thingy!"}
    assert len({e["id"] for e in stored}) == len(stored)


def _instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
