"""POST /api/me/events through the local host: bad input refused whole, all-day meetings (BR-05)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.simulator.faults import FaultRule
from tests.functional.conftest import Tenant
from tests.functional.test_calendar_sync import at, connected, graph_time, meeting

pytestmark = pytest.mark.stack

CUSTOMER = "cfo@acme.example"


def good_meeting() -> dict[str, Any]:
    """A valid half-hour meeting with a customer, three days from now."""
    start = at(3, 14)
    return {
        "subject": "Renewal",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "attendees": [CUSTOMER],
    }


def without(field: str) -> dict[str, Any]:
    """The good meeting with one field left out."""
    return {k: v for k, v in good_meeting().items() if k != field}


def calendar_posts(tenant: Tenant, upn: str) -> list[str]:
    """Paths of every POST to Graph's events the simulator served for a user."""
    oid = tenant.users[upn]
    seen = tenant.stack.sim.requests_seen()
    return [r.path for r in seen if r.method == "POST" and r.user == oid and "/events" in r.path]


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing subject", without("subject"), "subject"),
    ("blank subject", {**good_meeting(), "subject": "   "}, "subject"),
    ("missing start", without("start"), "start"),
    ("missing end", without("end"), "end"),
    ("end before start", {**good_meeting(), "end": at(2, 14).isoformat()}, "end"),
    ("end equal to start", {**good_meeting(), "end": at(3, 14).isoformat()}, "end"),
    ("start without offset", {**good_meeting(), "start": "2030-01-02T10:00:00"}, "start"),
    ("start not a date", {**good_meeting(), "start": "next tuesday"}, "start"),
    (
        "start before year 1 in UTC",
        {**good_meeting(), "start": "0001-01-01T00:00:00+05:00"},
        "start",
    ),
    (
        "end past year 9999 in the zone",
        {**good_meeting(), "end": "9999-12-31T23:30:00+00:00", "timeZone": "Asia/Tokyo"},
        "end",
    ),
    (
        "start in year 1",
        {**good_meeting(), "start": "0001-01-01T00:00:00+00:00", "end": "0001-01-01T01:00:00Z"},
        "start",
    ),
    ("start before 1900", {**good_meeting(), "start": "1899-12-31T23:59:59+00:00"}, "start"),
    ("end after 2999", {**good_meeting(), "end": "3000-01-01T00:00:01+00:00"}, "end"),
    (
        "all-day start in year 1",
        {**good_meeting(), "isAllDay": True, "start": "0001-01-01", "end": "0001-01-02"},
        "start",
    ),
    (
        "all-day end after 2999",
        {**good_meeting(), "isAllDay": True, "start": "2999-12-31", "end": "3000-01-02"},
        "end",
    ),
    ("unknown zone", {**good_meeting(), "timeZone": "Mars/Olympus_Mons"}, "timeZone"),
    ("zone folder America", {**good_meeting(), "timeZone": "America"}, "timeZone"),
    ("zone folder Etc", {**good_meeting(), "timeZone": "Etc"}, "timeZone"),
    ("zone path", {**good_meeting(), "timeZone": "../x"}, "timeZone"),
    ("zone with an empty segment", {**good_meeting(), "timeZone": "Europe//Paris"}, "timeZone"),
    ("host's own zone", {**good_meeting(), "timeZone": "localtime"}, "timeZone"),
    ("zone not text", {**good_meeting(), "timeZone": 5}, "timeZone"),
    ("bad attendee", {**good_meeting(), "attendees": [CUSTOMER, "not an address"]}, "attendees[1]"),
    ("attendee not text", {**good_meeting(), "attendees": [{"address": CUSTOMER}]}, "attendees[0]"),
    ("attendees not a list", {**good_meeting(), "attendees": CUSTOMER}, "attendees"),
    ("no attendees", {**good_meeting(), "attendees": []}, "attendees"),
    ("subject not text", {**good_meeting(), "subject": 42}, "subject"),
    ("start not text", {**good_meeting(), "start": 1767261600}, "start"),
    ("isAllDay not boolean", {**good_meeting(), "isAllDay": "true"}, "isAllDay"),
    ("location not text", {**good_meeting(), "location": ["room 1"]}, "location"),
    ("unknown field", {**good_meeting(), "recurrence": {}}, "recurrence"),
    (
        "all-day with times",
        {**good_meeting(), "isAllDay": True, "end": at(4).date().isoformat()},
        "start",
    ),
    (
        "all-day end with a time",
        {**good_meeting(), "isAllDay": True, "start": at(3).date().isoformat()},
        "end",
    ),
    (
        "all-day ending on its start day",
        {
            **good_meeting(),
            "isAllDay": True,
            "start": at(3).date().isoformat(),
            "end": at(3).date().isoformat(),
        },
        "end",
    ),
]


def test_create_meeting_bad_fields_are_400_naming_the_field_and_create_nothing(
    tenant: Tenant,
) -> None:
    """Each bad field, bad type or malformed body is a 400 naming it; Graph is never called."""
    # GIVEN a user with a connected calendar and a customer company
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    token = tenant.token(ann)

    # WHEN each bad body is posted, and then text that is not JSON and a JSON list
    answers = {
        name: tenant.stack.call("POST", "me/events", token, json=body)
        for name, body, _field in BAD_BODIES
    }
    headers = {"Content-Type": "application/json"}
    answers["malformed JSON"] = tenant.stack.call(
        "POST", "me/events", token, data=b'{"subject": "Renewal",', headers=headers
    )
    answers["not an object"] = tenant.stack.call("POST", "me/events", token, json=[good_meeting()])

    # THEN every one is a 400 whose error names the field at fault
    expected = {name: field for name, _body, field in BAD_BODIES}
    expected.update({"malformed JSON": "body", "not an object": "body"})
    got = {name: (a.status_code, a.json()["error"].get("field")) for name, a in answers.items()}
    assert got == {name: (400, field) for name, field in expected.items()}
    assert all(a.json()["error"]["code"] == "invalid_input" for a in answers.values())
    # AND nothing reached Graph, the calendar is empty and nothing was stored
    assert calendar_posts(tenant, ann) == []
    assert tenant.stack.sim.event_instances(ann, at(-400), at(400)) == []
    assert tenant.company_events("Acme") == []


def test_create_meeting_good_body_is_created_once(tenant: Tenant) -> None:
    """The body the bad cases are built from is itself accepted: one event, one Graph call."""
    # GIVEN a user with a connected calendar and a customer company
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")

    # WHEN the good body is posted
    answer = tenant.stack.call("POST", "me/events", tenant.token(ann), json=good_meeting())

    # THEN it is created in the calendar and stored
    assert answer.status_code == 201, answer.text
    assert len(calendar_posts(tenant, ann)) == 1
    assert [e["subject"] for e in tenant.stack.sim.event_instances(ann, at(-1), at(10))] == [
        "Renewal"
    ]
    assert [e["id"] for e in tenant.company_events("Acme")] == [answer.json()["id"]]


@pytest.fixture(params=[False, True], ids=["midnights", "zone-instants"])
def all_day_instants(request: pytest.FixtureRequest, tenant: Tenant) -> Any:
    """Play either form Graph gives all-day times in (BR-05), then the documented one again."""
    instants = bool(request.param)
    tenant.stack.sim.set_calendar_behaviour(legacy_series=False, all_day_instants=instants)
    yield instants
    tenant.stack.sim.set_calendar_behaviour(legacy_series=False, all_day_instants=False)


def test_create_all_day_meeting_syncs_back_as_one_record_with_dates(
    tenant: Tenant, all_day_instants: bool
) -> None:
    """An all-day meeting made in Pacific time is one record: its date and exclusive end date."""
    # GIVEN a user with a connected calendar, and a day ten days from now
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    day = at(10).date()
    body = {
        "subject": "Offsite",
        "isAllDay": True,
        "start": day.isoformat(),
        "end": (day + timedelta(days=1)).isoformat(),
        "timeZone": "Pacific Standard Time",
        "attendees": [CUSTOMER],
    }

    # WHEN the meeting is created through the API and the calendar syncs twice
    created = tenant.stack.call("POST", "me/events", tenant.token(ann), json=body)
    tenant.sync()
    tenant.sync()

    # THEN it is one record under the id the API gave, a date range with no instants
    assert created.status_code == 201, created.text
    stored = tenant.company_events("Acme")
    assert [e["id"] for e in stored] == [created.json()["id"]]
    event = stored[0]
    assert event["isAllDay"] is True
    assert (event["startDate"], event["endDate"]) == (
        day.isoformat(),
        (day + timedelta(days=1)).isoformat(),
    )
    assert (event["start"], event["end"]) == (None, None)
    items = tenant.stack.call("GET", "me/connections", tenant.token(ann)).json()["items"]
    calendar = next(c for c in items if c["kind"] == "calendar")
    assert calendar["lastRound"]["storedNew"] == 0


def test_calendar_sync_event_outside_the_years_kept_is_dropped_as_bad_times(
    tenant: Tenant,
) -> None:
    """A synced event that starts in year 1 is dropped with a reason; the calendar job goes on."""
    # GIVEN a calendar holding a customer meeting and two customer events that began in year 1
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    tenant.stack.sim.add_event(ann, meeting("Renewal", ann, [CUSTOMER], at(3)))
    ancient = meeting("Ancient", ann, [CUSTOMER], at(3), end=graph_time(at(4)))
    ancient["start"] = {"dateTime": "0001-01-01T00:00:00", "timeZone": "UTC"}
    tenant.stack.sim.add_event(ann, ancient)
    whole_days = {**ancient, "subject": "Ancient days", "isAllDay": True}
    whole_days["end"] = {"dateTime": f"{at(4).date().isoformat()}T00:00:00", "timeZone": "UTC"}
    tenant.stack.sim.add_event(ann, whole_days)

    # WHEN the calendar syncs
    tenant.sync()

    # THEN the meeting is stored, both old events are dropped as bad_times, and the job completed
    assert [e["subject"] for e in tenant.company_events("Acme")] == ["Renewal"]
    items = tenant.stack.call("GET", "me/connections", tenant.token(ann)).json()["items"]
    calendar = next(c for c in items if c["kind"] == "calendar")
    assert (calendar["state"], calendar["lastError"]) == ("active", None)
    assert calendar["lastRound"]["dropped"] == {"bad_times": 2}


def _meeting_in(zone: str, start: str, end: str) -> dict[str, Any]:
    """The good meeting at two instants, in a named zone."""
    return {**good_meeting(), "start": start, "end": end, "timeZone": zone}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-01T01:30:00-05:00", "2026-11-01T02:30:00-05:00"),
        ("2026-11-01T01:30:00-04:00", "2026-11-01T01:15:00-05:00"),
    ],
    ids=["second-0130", "end-wall-time-before-start"],
)
def test_create_meeting_in_the_repeated_hour_keeps_the_instants_asked_for(
    tenant: Tenant, start: str, end: str
) -> None:
    """A meeting in the hour New York repeats is created and stored at the instants asked for."""
    # GIVEN a user with a connected calendar, and a meeting on the night clocks go back
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    body = _meeting_in("America/New_York", start, end)

    # WHEN it is created
    answer = tenant.stack.call("POST", "me/events", tenant.token(ann), json=body)

    # THEN Outlook and the store hold those instants, in UTC, as its wall times name two
    assert answer.status_code == 201, answer.text
    [stored] = tenant.company_events("Acme")
    wanted = [datetime.fromisoformat(t).astimezone(UTC) for t in (start, end)]
    assert (stored["start"], stored["end"]) == tuple(
        t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in wanted
    )
    assert stored["timeZone"] == "UTC"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"),
        ("2026-07-01T09:00:00-04:00", "2026-07-01T10:00:00-04:00"),
    ],
    ids=["across-the-spring-gap", "summer-day"],
)
def test_create_meeting_with_wall_times_that_happen_once_is_sent_in_its_zone(
    tenant: Tenant, start: str, end: str
) -> None:
    """A meeting whose wall times each happen once keeps its own zone and its instants."""
    # GIVEN a user with a connected calendar, and a meeting in New York
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    body = _meeting_in("America/New_York", start, end)

    # WHEN it is created
    answer = tenant.stack.call("POST", "me/events", tenant.token(ann), json=body)

    # THEN it is stored at the instants asked for, in New York time
    assert answer.status_code == 201, answer.text
    [stored] = tenant.company_events("Acme")
    wanted = [datetime.fromisoformat(t).astimezone(UTC) for t in (start, end)]
    assert (stored["start"], stored["end"]) == tuple(
        t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in wanted
    )
    assert stored["timeZone"] == "America/New_York"


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "ErrorInvalidRequest"), (409, "ErrorIrresolvableConflict"), (422, None)],
)
def test_create_meeting_graph_refuses_is_a_502_naming_graphs_code_and_stores_nothing(
    tenant: Tenant, status: int, code: str | None
) -> None:
    """A meeting Graph refuses to create is a 502 graph_refused with its code, never a 500."""
    # GIVEN a user with a connected calendar, and Graph refusing the next event create
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    body = {"error": {"code": code, "message": "refused"}} if code else None
    refusal = FaultRule(r"/events$", status, method="POST", service="graph", user=ann, body=body)
    tenant.stack.sim.add_fault(refusal)

    # WHEN a valid meeting is posted
    answer = tenant.stack.call("POST", "me/events", tenant.token(ann), json=good_meeting())

    # THEN the answer is the product's JSON error naming Graph's refusal
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["reason"]) == ("graph_refused", code or "unknown")
    assert "nothing was created" in error["message"]
    # AND Graph was asked once, the calendar holds nothing and nothing was stored
    assert len(calendar_posts(tenant, ann)) == 1
    assert tenant.stack.sim.event_instances(ann, at(-1), at(10)) == []
    assert tenant.company_events("Acme") == []
