"""Calendar consent, sync and read through the local host, Azurite and the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def at(days: float, hour: int = 10) -> datetime:
    """A moment ``days`` from today at ``hour`` UTC."""
    today = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days)


def graph_time(moment: datetime, zone: str = "UTC") -> dict[str, str]:
    """A Graph dateTimeTimeZone for a UTC moment."""
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone}


def meeting(
    subject: str, organizer: str, attendees: list[str], start: datetime, **extra: Any
) -> dict[str, Any]:
    """A Graph-shaped one-hour meeting as a calendar would hold it."""
    return {
        "subject": subject,
        "start": graph_time(start),
        "end": graph_time(start + timedelta(hours=1)),
        "organizer": {"emailAddress": {"name": "", "address": organizer}},
        "attendees": [{"type": "required", "emailAddress": {"address": a}} for a in attendees],
        **extra,
    }


def connected(tenant: Tenant, alias: str) -> str:
    """Register a user and connect their calendar; return their upn."""
    upn = tenant.add_user(alias)
    tenant.stack.connect_calendar(tenant.token(upn)).raise_for_status()
    return upn


def test_calendar_consent_asks_calendar_scopes_apart_from_mail(tenant: Tenant) -> None:
    """Calendar consent asks only for calendar scopes and adds a calendar connection."""
    # GIVEN a registered user
    upn = tenant.add_user("ann")

    # WHEN they start calendar consent and accept it
    started = tenant.stack.call("POST", "me/connections/calendar", tenant.token(upn))
    callback = tenant.stack.connect_calendar(tenant.token(upn))

    # THEN Microsoft was asked for calendar scopes only, and one calendar connection is active
    assert started.status_code == 201
    scopes = parse_qs(urlsplit(started.json()["authorizeUrl"]).query)["scope"][0].split()
    assert "Calendars.ReadWrite" in scopes
    assert "offline_access" in scopes
    assert not [s for s in scopes if s.startswith("Mail.")]
    assert callback.status_code == 200, callback.text
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert [(c["kind"], c["state"]) for c in listed] == [("calendar", "active")]


def test_calendar_sync_keeps_customer_meetings_once_for_all_attendees(tenant: Tenant) -> None:
    """A customer meeting in two users' calendars is one record; internal meetings are dropped."""
    # GIVEN two connected users who both hold the same customer meeting, and an internal one
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = connected(tenant, "ann"), connected(tenant, "bob")
    shared = meeting("Quarterly review", ann, [bob, "cfo@acme.example"], at(3))
    shared["iCalUId"] = "uid-quarterly-review"
    tenant.stack.sim.add_event(ann, shared)
    tenant.stack.sim.add_event(bob, shared)
    tenant.stack.sim.add_event(ann, meeting("Team lunch", ann, [bob], at(2)))

    # WHEN a sync round runs, twice
    tenant.sync()
    first = tenant.stack.call("GET", "me/connections", tenant.token(ann)).json()["items"][0]
    tenant.sync()

    # THEN Acme has the one meeting, with UTC instants and its zone
    stored = tenant.company_events("Acme")
    assert [e["subject"] for e in stored] == ["Quarterly review"]
    event = stored[0]
    assert event["start"] == at(3).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["end"] == (at(3) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["timeZone"] == "UTC"
    assert event["isAllDay"] is False
    assert event["upcoming"] is True
    assert first["lastRound"]["dropped"] == {"internal_only": 1}
    assert first["lastRound"]["fullRound"] is True
