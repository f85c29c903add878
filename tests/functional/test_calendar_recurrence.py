"""Recurring series (BR-04) and all-day events (BR-05) through the host, Azurite and simulator.

Each test runs under both reported Graph behaviours the simulator plays: the new one, and the
legacy one (series masters in delta, bare occurrences, cancelled occurrences that vanish
silently; all-day events as the instants of their zone's midnights).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.functional.conftest import Tenant
from tests.functional.test_calendar_sync import at, connected, graph_time, meeting

pytestmark = pytest.mark.stack

CUSTOMER = "cfo@acme.example"


@pytest.fixture(params=[False, True], ids=["new", "legacy"])
def legacy(request: pytest.FixtureRequest, tenant: Tenant) -> Iterator[bool]:
    """Play the new or the legacy Graph behaviour of BR-04 and BR-05, then the new one again."""
    old = bool(request.param)
    tenant.stack.sim.set_calendar_behaviour(legacy_series=old, all_day_instants=old)
    yield old
    tenant.stack.sim.set_calendar_behaviour(legacy_series=False, all_day_instants=False)


def daily(
    subject: str, organizer: str, start: datetime, count: int, **extra: Any
) -> dict[str, Any]:
    """A daily series of one-hour customer meetings, ``count`` occurrences from ``start``."""
    series = meeting(subject, organizer, [CUSTOMER], start, iCalUId=f"uid-{uuid.uuid4()}")
    series["recurrence"] = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {
            "type": "numbered",
            "startDate": start.date().isoformat(),
            "numberOfOccurrences": count,
        },
    }
    return {**series, **extra}


def occurrences(tenant: Tenant, upn: str, master_id: str) -> list[dict[str, Any]]:
    """The series' instances as the simulator holds them, earliest first."""
    low, high = at(-30), at(60)
    found = tenant.stack.sim.event_instances(upn, low, high, master_id)
    return sorted(found, key=lambda item: item["start"]["dateTime"])


def starts(tenant: Tenant) -> list[str]:
    """The start instants of Acme's stored events, earliest first."""
    return sorted(str(event["start"]) for event in tenant.company_events("Acme"))


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def round_of(tenant: Tenant, upn: str) -> dict[str, Any]:
    items = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    return dict(next(c for c in items if c["kind"] == "calendar")["lastRound"])


def test_series_occurrences_are_stored_with_their_series_and_matched_through_it(
    tenant: Tenant, legacy: bool
) -> None:
    """Each occurrence is one record of the series' meeting, matched through its attendees."""
    # GIVEN a daily customer series of four meetings in Ann's calendar
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    series = daily("Daily stand-up", ann, at(2), 4)
    tenant.stack.sim.add_event(ann, series)

    # WHEN the calendar syncs, twice
    tenant.sync()
    tenant.sync()

    # THEN Acme holds the four occurrences once each, of the series' iCalUId and subject
    stored = tenant.company_events("Acme")
    assert starts(tenant) == [stamp(at(2 + day)) for day in range(4)]
    assert {e["iCalUId"] for e in stored} == {series["iCalUId"]}
    assert {e["subject"] for e in stored} == {"Daily stand-up"}
    assert {e["type"] for e in stored} == {"occurrence"}
    assert all(e["upcoming"] for e in stored)


def test_cancelled_occurrence_is_removed_however_graph_reports_it(
    tenant: Tenant, legacy: bool
) -> None:
    """An occurrence cancelled on its own goes: by ``@removed``, or found missing by reconcile."""
    # GIVEN a synced daily customer series of four meetings
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    master = tenant.stack.sim.add_event(ann, daily("Daily stand-up", ann, at(2), 4))
    tenant.sync()

    # WHEN the organiser cancels the third occurrence and the calendar syncs
    third = occurrences(tenant, ann, master)[2]
    tenant.stack.sim.cancel_occurrence(ann, third["id"])
    tenant.sync()

    # THEN only the other three are stored; the legacy delta said nothing, so the series was
    # reconciled against /instances
    assert starts(tenant) == [stamp(at(2)), stamp(at(3)), stamp(at(5))]
    if legacy:
        assert round_of(tenant, ann)["seriesReconciled"] >= 1


def test_series_change_reconciles_its_occurrences_in_the_window(
    tenant: Tenant, legacy: bool
) -> None:
    """A series shortened by its organiser loses the occurrences past its new end."""
    # GIVEN a synced daily customer series of five meetings
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    series = daily("Training", ann, at(2), 5)
    master = tenant.stack.sim.add_event(ann, series)
    tenant.sync()

    # WHEN the organiser cuts it to two occurrences and renames it, and the calendar syncs
    shorter = dict(series["recurrence"])
    shorter["range"] = {**series["recurrence"]["range"], "numberOfOccurrences": 2}
    tenant.stack.sim.update_event(ann, master, {"recurrence": shorter, "subject": "Training v2"})
    tenant.sync()

    # THEN the two remaining occurrences are stored, renamed, and the other three are gone
    stored = tenant.company_events("Acme")
    assert starts(tenant) == [stamp(at(2)), stamp(at(3))]
    assert {e["subject"] for e in stored} == {"Training v2"}


def test_exception_stays_the_same_record_as_its_occurrence(tenant: Tenant, legacy: bool) -> None:
    """An occurrence moved on its own is an exception, stored over the occurrence it was."""
    # GIVEN a synced daily customer series of three meetings
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    master = tenant.stack.sim.add_event(ann, daily("Review", ann, at(2), 3))
    tenant.sync()
    before = {e["start"]: e["id"] for e in tenant.company_events("Acme")}

    # WHEN the second occurrence moves two hours later and the calendar syncs
    second = occurrences(tenant, ann, master)[1]
    moved = {"start": graph_time(at(3, 12)), "end": graph_time(at(3, 13))}
    tenant.stack.sim.update_event(ann, second["id"], moved)
    tenant.sync()

    # THEN there are still three records; the moved one keeps its id and is an exception
    stored = {e["start"]: e for e in tenant.company_events("Acme")}
    assert sorted(stored) == [stamp(at(2)), stamp(at(3, 12)), stamp(at(4))]
    assert stored[stamp(at(3, 12))]["id"] == before[stamp(at(3))]
    assert stored[stamp(at(3, 12))]["type"] == "exception"


def test_meeting_cancelled_by_its_organiser_is_never_upcoming(tenant: Tenant, legacy: bool) -> None:
    """A whole cancelled series and a cancelled single meeting stay, cancelled, not upcoming."""
    # GIVEN a synced customer series and a single customer meeting in Bob's calendar
    tenant.add_company("Acme", ["acme.example"])
    bob = connected(tenant, "bob")
    organizer = f"ann@{tenant.domain}"
    master = tenant.stack.sim.add_event(bob, daily("Weekly sync", organizer, at(2), 3))
    single = tenant.stack.sim.add_event(bob, meeting("Kick-off", organizer, [CUSTOMER], at(9)))
    tenant.sync()

    # WHEN the organiser cancels both (Bob's copies stay, marked cancelled) and it syncs
    tenant.stack.sim.cancel_event(bob, master)
    tenant.stack.sim.cancel_event(bob, single)
    tenant.sync()

    # THEN all four are kept as cancelled, and none is upcoming
    stored = tenant.company_events("Acme")
    assert len(stored) == 4
    assert all(e["isCancelled"] for e in stored)
    assert not any(e["upcoming"] for e in stored)


@pytest.mark.parametrize(
    "zone", ["Pacific Standard Time", "Singapore Standard Time", "Asia/Kolkata", "UTC"]
)
def test_all_day_event_is_one_date_in_every_zone(tenant: Tenant, legacy: bool, zone: str) -> None:
    """A one-day all-day event is stored as its date and the next, whatever its zone (BR-05)."""
    # GIVEN a one-day all-day customer event created in ``zone``
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    day = (datetime.now(UTC) + timedelta(days=5)).date()
    event = meeting("Offsite", ann, [CUSTOMER], at(5), isAllDay=True)
    event["start"] = {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": zone}
    event["end"] = {
        "dateTime": f"{(day + timedelta(days=1)).isoformat()}T00:00:00",
        "timeZone": zone,
    }
    event["originalStartTimeZone"] = zone
    tenant.stack.sim.add_event(ann, event)

    # WHEN the calendar syncs
    tenant.sync()

    # THEN it is one day: that date to the next, exclusive, with no instants and its zone
    [stored] = tenant.company_events("Acme")
    assert stored["isAllDay"] is True
    assert (stored["startDate"], stored["endDate"]) == (
        day.isoformat(),
        (day + timedelta(days=1)).isoformat(),
    )
    assert (stored["start"], stored["end"]) == (None, None)
    assert stored["timeZone"] == zone
    assert stored["upcoming"] is True


def test_all_day_series_exception_is_matched_by_date(tenant: Tenant, legacy: bool) -> None:
    """An exception of an all-day series in Pacific time replaces its occurrence's record."""
    # GIVEN a synced all-day daily series of three days in Pacific time
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    zone = "Pacific Standard Time"
    first = (datetime.now(UTC) + timedelta(days=4)).date()
    series = daily("Trade fair", ann, at(4), 3, isAllDay=True, originalStartTimeZone=zone)
    series["start"] = {"dateTime": f"{first.isoformat()}T00:00:00", "timeZone": zone}
    series["end"] = {
        "dateTime": f"{(first + timedelta(days=1)).isoformat()}T00:00:00",
        "timeZone": zone,
    }
    master = tenant.stack.sim.add_event(ann, series)
    tenant.sync()

    # WHEN the second day gets its own location (an exception) and the calendar syncs
    second = occurrences(tenant, ann, master)[1]
    tenant.stack.sim.update_event(ann, second["id"], {"location": {"displayName": "Hall B"}})
    tenant.sync()

    # THEN the three days are still three one-day records, the second an exception
    stored = sorted(tenant.company_events("Acme"), key=lambda e: str(e["startDate"]))
    days = [first + timedelta(days=n) for n in range(3)]
    assert [(e["startDate"], e["endDate"]) for e in stored] == [
        (d.isoformat(), (d + timedelta(days=1)).isoformat()) for d in days
    ]
    assert [e["type"] for e in stored] == ["occurrence", "exception", "occurrence"]
    assert stored[1]["location"] == "Hall B"


def test_timed_event_is_stored_in_utc_with_its_zone_name(tenant: Tenant) -> None:
    """A meeting created in Berlin time is stored as UTC instants, named by its zone."""
    # GIVEN a customer meeting at 15:00 Berlin time in winter (14:00 UTC)
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    today = datetime.now(UTC).date()
    year = today.year + 1 if today >= date(today.year, 1, 15) else today.year
    zone = "W. Europe Standard Time"
    event = meeting("Pricing", ann, [CUSTOMER], at(1), originalStartTimeZone=zone)
    event["start"] = {"dateTime": f"{year}-01-15T15:00:00", "timeZone": zone}
    event["end"] = {"dateTime": f"{year}-01-15T16:30:00", "timeZone": zone}
    tenant.stack.sim.add_event(ann, event)

    # WHEN the calendar syncs
    tenant.sync()

    # THEN its instants are UTC and its zone is the one it was created in
    [stored] = tenant.company_events("Acme")
    assert (stored["start"], stored["end"]) == (
        f"{year}-01-15T14:00:00Z",
        f"{year}-01-15T15:30:00Z",
    )
    assert stored["timeZone"] == zone
    assert (stored["isAllDay"], stored["startDate"]) == (False, None)
