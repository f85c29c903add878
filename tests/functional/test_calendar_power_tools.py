"""Power tools on calendar data through the local host: delete one event, revoke, purge."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from devstack.simulator.faults import FaultRule
from shared.sync.eventrows import HOLDERS, event_partition
from tests.functional.conftest import Tenant
from tests.functional.test_calendar_sync import at, connected, graph_time, meeting
from tests.functional.test_mail_sync import message
from tests.functional.test_power_tools import _audit, _wait_purge
from tests.functional.test_sync_resilience import graph_calls

pytestmark = pytest.mark.stack

CUSTOMER = "cfo@acme.example"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


BEFORE = _stamp(datetime.now(UTC) - timedelta(days=2))
"""A ``createdDateTime`` for meetings that were in a calendar long before any purge."""


def _subjects(tenant: Tenant) -> list[str]:
    return sorted(e["subject"] for e in tenant.company_events("Acme"))


def _event_id(tenant: Tenant, subject: str) -> str:
    return next(e["id"] for e in tenant.company_events("Acme") if e["subject"] == subject)


def _calendar(tenant: Tenant, upn: str) -> dict[str, Any]:
    """The user's calendar connection as the API shows it."""
    items = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    return next(dict(c) for c in items if c["kind"] == "calendar")


def _states(tenant: Tenant, upn: str) -> dict[str, str]:
    items = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    return {c["kind"]: c["state"] for c in items}


def _move_window(tenant: Tenant, backfill_days: int) -> None:
    """Change the tenant's backfill so the wanted calendar window moves, forcing a full round."""
    body = {"name": "Test tenant", "ownDomains": [tenant.domain], "backfillDays": backfill_days}
    tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body).raise_for_status()


def _job(tenant: Tenant, upn: str) -> str:
    return json.dumps({"kind": "calendar", "tenant": tenant.tenant_id, "user": tenant.users[upn]})


def _holders(tenant: Tenant, event_id: str) -> list[str]:
    """The users whose calendars hold a stored event, read from its holder rows."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    partition = event_partition(tenant.tenant_id, event_id)
    rows = service.get_table_client(HOLDERS).query_entities(
        "PartitionKey eq @pk", parameters={"pk": partition}
    )
    return sorted(str(r["userId"]) for r in rows if r["eventKey"] == event_id)


def test_deleted_event_stays_gone_through_resync_window_move_reset_and_other_calendars(
    tenant: Tenant,
) -> None:
    """A deleted event never comes back: not on resync, a reschedule, a full round or a reset."""
    # GIVEN a customer meeting Ann and Ben both hold, and one only Ann holds
    tenant.add_company("Acme", ["acme.example"])
    ann, ben = connected(tenant, "ann"), connected(tenant, "ben")
    shared = meeting("Review", ann, [ben, CUSTOMER], at(3), iCalUId=f"uid-{uuid.uuid4()}")
    tenant.stack.sim.add_event(ann, shared)
    ben_copy = tenant.stack.sim.add_event(ben, dict(shared))
    tenant.stack.sim.add_event(ann, meeting("Own", ann, [CUSTOMER], at(4)))
    tenant.sync()
    event = _event_id(tenant, "Review")

    # WHEN Ann deletes it; it syncs again; Ben's copy moves an hour later; the window moves;
    # both calendars' delta state expires; and Carl, who holds the same meeting, connects
    deleted = tenant.stack.call("DELETE", f"events/{event}", tenant.token(ann))
    tenant.sync()
    later = {"start": graph_time(at(3, 11)), "end": graph_time(at(3, 12))}
    tenant.stack.sim.update_event(ben, ben_copy, later)
    tenant.sync()
    ben_moved = _calendar(tenant, ben)["lastRound"]
    _move_window(tenant, 300)
    tenant.sync()
    ann_window = _calendar(tenant, ann)["lastRound"]
    tenant.stack.sim.invalidate_calendar_sync_state(ann)
    tenant.stack.sim.invalidate_calendar_sync_state(ben)
    tenant.sync()
    ann_reset = _calendar(tenant, ann)["lastRound"]
    carl = connected(tenant, "carl")
    tenant.stack.sim.add_event(carl, dict(shared))
    tenant.sync()

    # THEN it is gone for the whole tenant, every calendar dropped it as deleted, Ann's other
    # meeting stays, and the deletion is audited with both holders
    assert deleted.status_code == 204
    assert _subjects(tenant) == ["Own"]
    assert ben_moved["dropped"] == {"deleted": 1}
    assert (ann_window["fullRound"], ann_window["dropped"]) == (True, {"deleted": 1})
    assert (ann_reset["fullRound"], ann_reset["dropped"]) == (True, {"deleted": 1})
    assert _calendar(tenant, carl)["lastRound"]["dropped"] == {"deleted": 1}
    assert _holders(tenant, event) == []
    again = tenant.stack.call("DELETE", f"events/{event}", tenant.admin)
    assert again.status_code == 404
    assert again.json()["error"]["code"]
    entry = _audit(tenant, "event.delete")[1]
    assert (entry["outcome"], entry["targetId"], entry["counts"]) == (
        "succeeded",
        event,
        {"holders": 2},
    )


def test_only_a_holder_or_an_admin_may_delete_an_event(tenant: Tenant) -> None:
    """A reader who does not hold an event gets 403; one who cannot read it gets 404."""
    # GIVEN Ann's customer meeting, a colleague who may read it, a colleague who sees only the
    # companies she owns, and an admin of another tenant
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    tenant.stack.sim.add_event(ann, meeting("Mine", ann, [CUSTOMER], at(2)))
    tenant.sync()
    event = _event_id(tenant, "Mine")
    policy = {"roles": {"Sales": {"portfolio": "owned"}}}
    tenant.stack.call("PUT", "admin/permissions", tenant.admin, json=policy).raise_for_status()
    carl = tenant.add_user("carl")
    dana = tenant.add_user("dana", roles=("Sales",))
    outsider = tenant.stack.token(str(uuid.uuid4()), str(uuid.uuid4()), roles=("Admin",))

    # WHEN each tries to delete it, and an admin names an id that is no event
    by_reader = tenant.stack.call("DELETE", f"events/{event}", tenant.token(carl))
    by_seller = tenant.stack.call("DELETE", f"events/{event}", tenant.token(dana))
    by_outsider = tenant.stack.call("DELETE", f"events/{event}", outsider)
    by_bad_id = tenant.stack.call("DELETE", "events/not-an-event", tenant.admin)
    still_there = _subjects(tenant)
    by_admin = tenant.stack.call("DELETE", f"events/{event}", tenant.admin)

    # THEN only the admin succeeds, refusals leave the event alone, and each call is audited
    assert by_reader.status_code == 403
    assert by_seller.status_code == by_outsider.status_code == by_bad_id.status_code == 404
    assert by_reader.json()["error"]["message"]
    assert still_there == ["Mine"]
    assert by_admin.status_code == 204
    assert _subjects(tenant) == []
    outcomes = [e["outcome"] for e in _audit(tenant, "event.delete")]
    assert outcomes == ["succeeded", "refused", "refused", "refused"]


def test_revoking_calendar_leaves_mail_syncing_and_calendar_jobs_make_no_graph_call(
    tenant: Tenant,
) -> None:
    """Revoking calendar stops calendar sync only; a new calendar consent starts from scratch."""
    # GIVEN Ann with her mailbox and her calendar connected and synced
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    tenant.stack.connect_mail(tenant.token(ann)).raise_for_status()
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "mail 1")])
    tenant.stack.sim.add_event(ann, meeting("Meeting 1", ann, [CUSTOMER], at(2)))
    tenant.sync()

    # WHEN she revokes calendar, a calendar job for her runs, new mail and a new meeting arrive
    # and a round runs, and later she connects her calendar again
    revoked = tenant.stack.call("POST", "me/connections/calendar/revoke", tenant.token(ann))
    before_job = graph_calls(tenant, ann)
    tenant.stack.run_function("calendar_sync_worker", _job(tenant, ann))
    tenant.stack.wait_idle()
    after_job = graph_calls(tenant, ann)
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "mail 2")])
    tenant.stack.sim.add_event(ann, meeting("Meeting 2", ann, [CUSTOMER], at(3)))
    calendar_before = graph_calls(tenant, ann, "/calendarView")
    tenant.sync()
    calendar_during = graph_calls(tenant, ann, "/calendarView") - calendar_before
    mail_after_round = sorted(e["subject"] for e in tenant.company_emails("Acme"))
    events_after_round = _subjects(tenant)
    states_after_round = _states(tenant, ann)
    tenant.stack.connect_calendar(tenant.token(ann)).raise_for_status()
    tenant.sync()

    # THEN calendar alone was revoked and made no Graph call, mail kept syncing, stored events
    # stayed, and the new consent synced the whole calendar again in a full round
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert after_job == before_job
    assert calendar_during == 0
    assert states_after_round == {"mail": "active", "calendar": "revoked"}
    assert mail_after_round == ["mail 1", "mail 2"]
    assert events_after_round == ["Meeting 1"]
    assert _subjects(tenant) == ["Meeting 1", "Meeting 2"]
    round_after_consent = _calendar(tenant, ann)
    assert round_after_consent["state"] == "active"
    assert round_after_consent["lastRound"]["fullRound"] is True
    assert round_after_consent["lastRound"]["seen"] == 2
    revokes = [(e["outcome"], e["targetId"]) for e in _audit(tenant, "connection.revoke")]
    assert revokes == [("succeeded", "calendar")]


def test_revoking_calendar_while_its_job_runs_stores_no_further_page(tenant: Tenant) -> None:
    """A calendar job in flight when its connection is revoked stops before its next page."""
    # GIVEN Ann's calendar of three pages, whose second page Graph is slow to serve
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    meetings = [meeting(f"m{i}", ann, [CUSTOMER], at(1 + i / 10)) for i in range(60)]
    tenant.stack.sim.load_events(ann, meetings)
    slow = FaultRule(r"/calendarView/delta$", 0, service="graph", user=ann, after=1, delay_s=3)
    tenant.stack.sim.add_fault(slow)

    # WHEN the job has stored its first page and Ann revokes while it waits for the second
    tenant.stack.run_function("calendar_sync_worker", _job(tenant, ann))
    for _ in range(100):
        if len(tenant.company_events("Acme")) >= 25:
            break
        time.sleep(0.1)
    tenant.stack.call(
        "POST", "me/connections/calendar/revoke", tenant.token(ann)
    ).raise_for_status()
    tenant.stack.wait_idle()
    time.sleep(3.5)

    # THEN only the first page was stored, and the connection stays revoked without a round
    assert len(tenant.company_events("Acme")) == 25
    calendar = _calendar(tenant, ann)
    assert calendar["state"] == "revoked"
    assert not calendar.get("lastRound")


def test_calendar_purge_keeps_shared_events_and_nothing_syncs_back(tenant: Tenant) -> None:
    """A purge takes Ann's events out, keeps what Ben holds, and none of them returns."""
    # GIVEN Ann's own meetings and a daily series, all in her calendar for days, and a meeting
    # she shares with Ben
    tenant.add_company("Acme", ["acme.example"])
    ann, ben = connected(tenant, "ann"), connected(tenant, "ben")
    shared = meeting(
        "Shared", ann, [ben, CUSTOMER], at(3), iCalUId=f"uid-{uuid.uuid4()}", createdDateTime=BEFORE
    )
    tenant.stack.sim.add_event(ann, shared)
    tenant.stack.sim.add_event(ben, dict(shared))
    own = [
        meeting(f"Own {i}", ann, [CUSTOMER], at(4 + i), createdDateTime=BEFORE) for i in range(3)
    ]
    daily = {"pattern": {"type": "daily"}, "range": {"type": "numbered", "numberOfOccurrences": 3}}
    series = meeting("Standup", ann, [CUSTOMER], at(10), recurrence=daily, createdDateTime=BEFORE)
    tenant.stack.sim.load_events(ann, [*own, series])
    tenant.sync()
    event = _event_id(tenant, "Shared")

    # WHEN Ann purges her calendar (twice at once), it completes, a new meeting reaches her
    # calendar, and her calendar syncs, its window moves and its delta state expires
    first = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "calendar"})
    second = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "calendar"})
    status = _wait_purge(tenant, tenant.token(ann), first.headers["Location"])
    holders_after_purge = _holders(tenant, event)
    tenant.stack.sim.add_event(ann, meeting("After", ann, [CUSTOMER], at(6)))
    tenant.sync()
    _move_window(tenant, 300)
    tenant.sync()
    window_round = _calendar(tenant, ann)["lastRound"]
    tenant.stack.sim.invalidate_calendar_sync_state(ann)
    tenant.sync()
    reset_round = _calendar(tenant, ann)["lastRound"]

    # THEN only the shared meeting (held by Ben alone) and the new one are left, and every
    # full round dropped Ann's older meetings as purged
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert (status["state"], status["kind"]) == ("completed", "calendar")
    assert status["counts"] == {"removed": 6, "keptShared": 1}
    assert holders_after_purge == [tenant.users[ben]]
    assert _subjects(tenant) == ["After", "Shared"]
    assert _holders(tenant, event) == [tenant.users[ben]]
    assert (window_round["fullRound"], window_round["dropped"]) == (True, {"purged": 7})
    assert (reset_round["fullRound"], reset_round["dropped"]) == (True, {"purged": 7})
    assert tenant.stack.call("DELETE", f"events/{event}", tenant.token(ann)).status_code == 403
    audited = [(e["outcome"], e["targetId"]) for e in _audit(tenant, "events.purge")]
    job = first.json()["id"]
    assert audited == [("succeeded", job), ("accepted", job), ("accepted", job)]


def test_admin_purges_another_users_calendar_but_a_plain_user_cannot(tenant: Tenant) -> None:
    """An admin purges a user's calendar through the admin route; a colleague is refused."""
    # GIVEN Ann's synced calendar and a colleague without power tools on others
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    meetings = [
        meeting(f"m{i}", ann, [CUSTOMER], at(2 + i), createdDateTime=BEFORE) for i in range(2)
    ]
    tenant.stack.sim.load_events(ann, meetings)
    tenant.sync()
    carl = tenant.add_user("carl")
    path = f"admin/users/{tenant.users[ann]}/purges"
    body = {"kind": "calendar"}

    # WHEN Carl and then an admin start a purge of Ann's calendar
    by_carl = tenant.stack.call("POST", path, tenant.token(carl), json=body)
    by_admin = tenant.stack.call("POST", path, tenant.admin, json=body)
    status = _wait_purge(tenant, tenant.admin, by_admin.headers["Location"])

    # THEN Carl is forbidden, and the admin's purge removed both meetings
    assert by_carl.status_code == 403
    assert by_admin.status_code == 202
    assert by_admin.headers["Location"] == f"/api/{path}/{by_admin.json()['id']}"
    assert (status["state"], status["userId"]) == ("completed", tenant.users[ann])
    assert status["counts"] == {"removed": 2, "keptShared": 0}
    assert _subjects(tenant) == []


def test_after_a_purge_bare_legacy_occurrences_are_judged_by_their_series(tenant: Tenant) -> None:
    """With BR-04's legacy delta (bare occurrences), a series' creation time decides for each."""
    # GIVEN Graph's legacy series behaviour and Ann's daily series, in her calendar for days
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    daily = {"pattern": {"type": "daily"}, "range": {"type": "numbered", "numberOfOccurrences": 3}}
    old = meeting("Old standup", ann, [CUSTOMER], at(5), recurrence=daily, createdDateTime=BEFORE)
    tenant.stack.sim.set_calendar_behaviour(legacy_series=True, all_day_instants=False)
    try:
        tenant.stack.sim.add_event(ann, old)
        tenant.sync()
        stored_before = _subjects(tenant)

        # WHEN she purges her calendar, a new series arrives, and a full round runs
        purge = {"kind": "calendar"}
        started = tenant.stack.call("POST", "me/purges", tenant.token(ann), json=purge)
        status = _wait_purge(tenant, tenant.token(ann), started.headers["Location"])
        new = meeting("New standup", ann, [CUSTOMER], at(8), recurrence=daily)
        tenant.stack.sim.add_event(ann, new)
        tenant.sync()
        _move_window(tenant, 300)
        tenant.sync()
        window_round = _calendar(tenant, ann)["lastRound"]
    finally:
        tenant.stack.sim.set_calendar_behaviour(legacy_series=False, all_day_instants=False)

    # THEN the old series' occurrences stayed out as purged and the new series' were kept
    assert stored_before == ["Old standup"] * 3
    assert status["counts"] == {"removed": 3, "keptShared": 0}
    assert _subjects(tenant) == ["New standup"] * 3
    assert (window_round["fullRound"], window_round["dropped"]) == (True, {"purged": 3})
