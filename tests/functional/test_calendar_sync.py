"""Calendar consent, sync and read through the local host, Azurite and the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.data.tables import TableServiceClient

from shared.settings import Settings
from shared.sync.calendar import CalendarSyncService
from shared.sync.eventrows import HOLDERS, event_partition
from shared.wiring import Services
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


def _holders(tenant: Tenant, event_id: str) -> list[str]:
    """The users whose calendars hold a stored event, from its holder rows."""
    client = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    rows = client.get_table_client(HOLDERS).query_entities(
        "PartitionKey eq @pk", parameters={"pk": event_partition(tenant.tenant_id, event_id)}
    )
    return sorted(str(r["userId"]) for r in rows if r["eventKey"] == event_id)


def _calendar_round(tenant: Tenant, upn: str) -> dict[str, Any]:
    items = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    return dict(next(c for c in items if c["kind"] == "calendar")["lastRound"])


def _worker_at(tenant: Tenant, now: datetime, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A calendar worker in this process, on the stack's storage and Graph, whose clock says now."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, tenant.stack.env[name])
    services = Services(Settings.from_env(tenant.stack.env))
    return CalendarSyncService(
        connections=services.connections,
        graph=services.graph_calendar,
        directory=services.directory,
        events=services.events,
        queue=services.queue,
        tables=services.tables,
        clock=lambda: now,
    )


def test_moved_window_starts_over_without_duplicates_or_losses(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight days on, a full round covers the new window: new far events come, none doubles."""
    # GIVEN a synced calendar with meetings in the past, the near future, one just past the
    # window's end, one that will leave the window's start, and one that will be deleted
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    customer = ["cfo@acme.example"]
    names = {"Old": -355, "Recent": -5, "Soon": 10, "Far": 369, "Dropped": 20}
    ids = {
        name: tenant.stack.sim.add_event(ann, meeting(name, ann, customer, at(days)))
        for name, days in names.items()
    }
    tenant.sync()
    before = {e["subject"]: e["id"] for e in tenant.company_events("Acme")}

    # WHEN "Dropped" is deleted in Outlook and, eight days later, the calendar syncs twice
    tenant.stack.sim.delete_event(ann, ids["Dropped"])
    worker = _worker_at(tenant, datetime.now(UTC) + timedelta(days=8), monkeypatch)
    job = {"kind": "calendar", "tenant": tenant.tenant_id, "user": tenant.users[ann]}
    moved = worker.run(job)
    again = worker.run(job)

    # THEN the first round was a full one over the new window: "Far" came in, "Dropped" went,
    # "Old" (now before the window) stays as history, and every meeting is one record with
    # the id it had; the next round is incremental and changes nothing
    assert sorted(before) == ["Dropped", "Old", "Recent", "Soon"]
    after = tenant.company_events("Acme")
    assert sorted(e["subject"] for e in after) == ["Far", "Old", "Recent", "Soon"]
    assert {e["subject"]: e["id"] for e in after if e["subject"] != "Far"} == {
        name: before[name] for name in ("Old", "Recent", "Soon")
    }
    assert (moved.full_round, moved.stored_new, moved.unlinked) == (True, 1, 1)
    assert (again.full_round, again.stored_new, again.unlinked) == (False, 0, 0)


def test_series_held_by_two_users_is_one_record_per_occurrence(tenant: Tenant) -> None:
    """Each occurrence of a series in two attendees' calendars is one record with two holders."""
    # GIVEN a daily customer series of three meetings that Ann and Bob both hold
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = connected(tenant, "ann"), connected(tenant, "bob")
    series = meeting("Stand-up", ann, [bob, "cfo@acme.example"], at(2))
    series["iCalUId"] = f"uid-standup-{tenant.tenant_id}"
    series["recurrence"] = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {
            "type": "numbered",
            "startDate": at(2).date().isoformat(),
            "numberOfOccurrences": 3,
        },
    }
    tenant.stack.sim.add_event(ann, dict(series))
    tenant.stack.sim.add_event(bob, dict(series))

    # WHEN both calendars sync, twice
    tenant.sync()
    tenant.sync()

    # THEN Acme holds three records, one per occurrence, each held by both
    stored = tenant.company_events("Acme")
    assert sorted(e["start"] for e in stored) == [
        at(2 + day).strftime("%Y-%m-%dT%H:%M:%SZ") for day in range(3)
    ]
    for event in stored:
        assert _holders(tenant, event["id"]) == sorted([tenant.users[ann], tenant.users[bob]])
    assert _calendar_round(tenant, bob)["storedNew"] == 0


def test_meeting_created_through_the_api_syncs_back_as_the_same_record(tenant: Tenant) -> None:
    """A meeting made with POST /api/me/events is the one record after its calendars sync."""
    # GIVEN Ann and Bob with connected calendars
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = connected(tenant, "ann"), connected(tenant, "bob")
    start = at(6, 14)
    body = {
        "subject": "Renewal",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "attendees": ["cfo@acme.example", bob],
    }

    # WHEN Ann creates a meeting with the customer and Bob, and the calendars sync twice
    created = tenant.stack.call("POST", "me/events", tenant.token(ann), json=body)
    listed = tenant.company_events("Acme")
    tenant.sync()
    tenant.sync()

    # THEN the meeting was stored at once, and after syncing it is still that one record,
    # held by Ann (her calendar) and Bob (the invitation's copy), never stored anew
    assert created.status_code == 201, created.text
    assert [e["id"] for e in listed] == [created.json()["id"]]
    stored = tenant.company_events("Acme")
    assert [(e["id"], e["subject"]) for e in stored] == [(created.json()["id"], "Renewal")]
    assert stored[0]["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _holders(tenant, created.json()["id"]) == sorted([tenant.users[ann], tenant.users[bob]])
    assert _calendar_round(tenant, ann)["storedNew"] == 0


def test_calendar_graph_requests_all_ask_for_utc(tenant: Tenant) -> None:
    """Every calendar request of sync and of meeting creation carries outlook.timezone UTC."""
    # GIVEN a user in Pacific time whose calendar holds a customer series and a single meeting
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    tenant.stack.sim.set_mailbox_time_zone(ann, "Pacific Standard Time")
    series = meeting("Stand-up", ann, ["cfo@acme.example"], at(2))
    series["recurrence"] = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {
            "type": "numbered",
            "startDate": at(2).date().isoformat(),
            "numberOfOccurrences": 2,
        },
    }
    master = tenant.stack.sim.add_event(ann, series)
    tenant.stack.sim.add_event(ann, meeting("Review", ann, ["cfo@acme.example"], at(5)))
    start = at(7, 15)
    body = {
        "subject": "Renewal",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "attendees": ["cfo@acme.example"],
    }

    # WHEN the calendar syncs, a meeting is created, an occurrence is cancelled and it syncs again
    tenant.sync()
    created = tenant.stack.call("POST", "me/events", tenant.token(ann), json=body)
    occurrence = tenant.stack.sim.event_instances(ann, at(1), at(4), master)[0]["id"]
    tenant.stack.sim.cancel_occurrence(ann, occurrence)
    tenant.sync()

    # THEN delta pages, series reads and the create all asked Graph for UTC times
    assert created.status_code == 201, created.text
    oid = tenant.users[ann]
    calendar = [
        r
        for r in tenant.stack.sim.requests_seen()
        if r.service == "graph"
        and r.user == oid
        and ("/calendarView" in r.path or "/events" in r.path)
    ]
    endpoints = {(r.method, r.path.split("/me/")[-1].split("/")[0]) for r in calendar}
    assert endpoints == {("GET", "calendarView"), ("GET", "events"), ("POST", "events")}
    unasked = [(r.method, r.path, r.prefer) for r in calendar if not _asks_utc(r.prefer)]
    assert unasked == []
    stored = sorted(e["start"] for e in tenant.company_events("Acme"))
    assert start.strftime("%Y-%m-%dT%H:%M:%SZ") in stored


def _asks_utc(prefer: tuple[str, ...]) -> bool:
    """Tell whether Prefer header values ask for outlook.timezone="UTC"."""
    parts = [part.strip() for value in prefer for part in value.split(",")]
    return 'outlook.timezone="UTC"' in parts


def test_events_of_odd_shapes_do_not_block_the_calendar(tenant: Tenant) -> None:
    """Events whose fields have other JSON types are stored or dropped; the rest syncs on."""
    # GIVEN customer meetings whose attendees are a number, location a string and subject a
    # list, beside an ordinary one
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    odd = [meeting(f"Odd {n}", "cfo@acme.example", [ann], at(2 + n)) for n in range(3)]
    odd[0]["attendees"] = 7
    odd[1]["location"] = "Room 1"
    odd[2]["subject"] = ["not", "text"]
    for event in odd:
        tenant.stack.sim.add_event(ann, event)
    tenant.stack.sim.add_event(ann, meeting("Plain", "cfo@acme.example", [ann], at(6)))

    # WHEN a sync round runs
    tenant.sync()

    # THEN the ordinary meeting is stored, each odd one is stored or counted as dropped, and
    # the round completed
    subjects = [e["subject"] for e in tenant.company_events("Acme")]
    assert "Plain" in subjects
    record = _calendar_round(tenant, ann)
    assert record["complete"] is True
    assert record["kept"] + sum(record["dropped"].values()) == 4
