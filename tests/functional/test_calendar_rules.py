"""Blocking rules on calendar events, through the host, Azurite and the simulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tablelimits import table_key
from tests.functional.conftest import Tenant
from tests.functional.test_blocking_rules import add_rule
from tests.functional.test_calendar_recurrence import daily, round_of
from tests.functional.test_calendar_sync import at, connected, meeting

pytestmark = pytest.mark.stack

CUSTOMER = "cfo@acme.example"
LAWYER = "counsel@acme.example"


def subjects(tenant: Tenant) -> list[str]:
    return sorted(str(e["subject"]) for e in tenant.company_events("Acme"))


def decisions(tenant: Tenant, upn: str) -> list[dict[str, Any]]:
    """The decision records of a user's calendar, read from storage."""
    client = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    partition = table_key(tenant.tenant_id, tenant.users[upn], "calendar")
    table = client.get_table_client("maildecisions")
    rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
    return [dict(row) for row in rows]


def salt(tenant: Tenant) -> bytes:
    """The tenant's decision-hash salt, read from storage."""
    client = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    row = client.get_table_client("blockrules").get_entity(
        table_key(tenant.tenant_id), table_key("settings", "salt")
    )
    return base64.b64decode(str(row["salt"]))


def test_rule_on_one_person_blocks_their_meetings_and_leaves_only_a_decision(
    tenant: Tenant,
) -> None:
    """Meetings a named person organises or attends are not stored; a hashed record stays."""
    # GIVEN a tenant rule blocking the customer's counsel, in any role, and three meetings:
    # one the counsel organises, a series the counsel attends, and one without the counsel
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    person = {"type": "participant", "role": "any", "addresses": [LAWYER]}
    rule = add_rule(tenant, {"name": "Counsel", "conditions": [person]})
    organised = meeting("Settlement talk", LAWYER, [ann], at(2), iCalUId=f"uid-{uuid.uuid4()}")
    attended = daily("Contract series", ann, at(3), 2)
    attended["attendees"].append({"type": "required", "emailAddress": {"address": LAWYER}})
    other = meeting("Demo", ann, [CUSTOMER], at(4))
    organised_id = tenant.stack.sim.add_event(ann, organised)
    tenant.stack.sim.load_events(ann, [attended, other])

    # WHEN the calendar syncs
    tenant.sync()

    # THEN only the meeting without the counsel is stored; the three dropped events each left
    # a record naming the rule, keyed by a hash of the event id, with no text or address
    assert subjects(tenant) == ["Demo"]
    assert round_of(tenant, ann)["dropped"] == {"rule": 3}
    records = decisions(tenant, ann)
    assert len(records) == 3
    assert {(r["reason"], r["ruleId"], r["ruleScope"]) for r in records} == {
        ("rule", rule["id"], "tenant")
    }
    mac = hmac.new(salt(tenant), f"item\n{organised_id}".encode(), hashlib.sha256).hexdigest()
    assert mac in {r["RowKey"] for r in records}
    text = repr(records)
    for secret in ("Settlement", "Contract", LAWYER, "acme.example", organised_id):
        assert secret not in text
    assert all(r["decidedAt"] for r in records)


def test_subject_phrase_rule_blocks_meetings_and_removes_a_renamed_one(tenant: Tenant) -> None:
    """A subject phrase drops matching meetings, also one renamed to match after it was stored."""
    # GIVEN a rule on the phrase "board pack" in subject or body, and three customer meetings
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    phrase = {"type": "content", "field": "subjectOrBody", "phrase": "board pack"}
    add_rule(tenant, {"name": "Board", "conditions": [phrase]})
    titled = meeting("Review the BOARD   pack", ann, [CUSTOMER], at(2))
    in_body = meeting("Prep", ann, [CUSTOMER], at(3))
    in_body["body"] = {"contentType": "html", "content": "<p>Bring the <b>board pack</b></p>"}
    plain = meeting("Roadmap", ann, [CUSTOMER], at(4))
    _, _, plain_id = tenant.stack.sim.load_events(ann, [titled, in_body, plain])
    tenant.sync()
    first = subjects(tenant)

    # WHEN the stored meeting is renamed to mention the board pack, and it syncs
    tenant.stack.sim.update_event(ann, plain_id, {"subject": "Roadmap and board pack"})
    tenant.sync()

    # THEN the subject and body matches were never stored, and the renamed one is gone
    assert first == ["Roadmap"]
    assert subjects(tenant) == []
    assert round_of(tenant, ann)["dropped"] == {"rule": 1}


def test_user_rule_applies_only_to_that_users_calendar(tenant: Tenant) -> None:
    """Ann's own rule drops her copy of a meeting; Ben's copy of it still syncs."""
    # GIVEN Ann's rule on the phrase "golf", and a golf meeting with the customer in both
    # calendars, plus one only Ann holds
    tenant.add_company("Acme", ["acme.example"])
    ann, ben = connected(tenant, "ann"), connected(tenant, "ben")
    phrase = {"type": "content", "field": "subject", "phrase": "golf"}
    add_rule(tenant, {"name": "No golf", "conditions": [phrase]}, token=tenant.token(ann))
    shared = meeting("Golf day", ann, [ben, CUSTOMER], at(5), iCalUId=f"uid-{uuid.uuid4()}")
    tenant.stack.sim.add_event(ann, dict(shared))
    tenant.stack.sim.add_event(ben, dict(shared))
    tenant.stack.sim.add_event(ann, meeting("Golf lesson", ann, [CUSTOMER], at(6)))

    # WHEN both calendars sync
    tenant.sync()

    # THEN only Ben's copy of the shared meeting is stored; Ann dropped both of hers
    assert subjects(tenant) == ["Golf day"]
    assert round_of(tenant, ann)["dropped"] == {"rule": 2}
    assert round_of(tenant, ben)["dropped"] == {}
    assert [r["ruleScope"] for r in decisions(tenant, ann)] == ["user", "user"]
    assert decisions(tenant, ben) == []


def test_mail_only_switches_do_not_drop_meetings(tenant: Tenant) -> None:
    """Automatic-reply and bulk-mail switches leave meetings alone; a no-reply organiser drops."""
    # GIVEN the automatic replies, bulk mail and no-reply switches on, and two meetings
    tenant.add_company("Acme", ["acme.example"])
    ann = connected(tenant, "ann")
    switches = {"automaticReplies": True, "bulkMail": True, "noReplySenders": True}
    put = tenant.stack.call("PUT", "admin/rules/switches", tenant.admin, json=switches)
    assert put.status_code == 200, put.text
    tenant.stack.sim.add_event(ann, meeting("Webinar", "no-reply@acme.example", [ann], at(2)))
    tenant.stack.sim.add_event(ann, meeting("Call", CUSTOMER, [ann], at(3)))

    # WHEN the calendar syncs
    tenant.sync()

    # THEN the customer's meeting is kept and the no-reply organiser's is dropped
    assert subjects(tenant) == ["Call"]
    assert round_of(tenant, ann)["dropped"] == {"no_reply_sender": 1}
