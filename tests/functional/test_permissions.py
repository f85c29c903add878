"""Layered read permissions through the local host: portfolio, fields, workflows, features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tablelimits import table_key
from tests.functional.conftest import Tenant
from tests.functional.test_calendar_sync import at, meeting
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack

ADMIN = "the tenant admin"

SALES_ONLY_OWNED = {
    "roles": {
        "Sales": {"portfolio": "owned"},
        "Auditor": {
            "workflows": [],
            "fields": {
                "email": {"visible": ["from", "recipients", "sentDateTime", "receivedDateTime"]},
                "company": {"hidden": ["properties.arr"]},
            },
        },
        "Intern": {"features": ["mail"], "workflows": []},
        "Ops": {"workflows": ["manageSettings"]},
    }
}


@dataclass
class World:
    """A tenant with two companies, a synced mailbox and users of several roles."""

    tenant: Tenant
    sam: str
    acme: str
    globex: str

    def get(self, upn: str, path: str, **params: Any) -> Any:
        """GET as one of the tenant's users (or its admin); return status and JSON body."""
        token = self.tenant.admin if upn == ADMIN else self.tenant.token(upn)
        answer = self.tenant.stack.call("GET", path, token, params=params)
        return answer.status_code, answer.json()

    def subjects(self, upn: str, path: str) -> list[str]:
        """Every item's subject of a paged list, following continuation tokens."""
        found: list[str] = []
        token = None
        while True:
            params = {"pageSize": 2, **({"continuationToken": token} if token else {})}
            status, page = self.get(upn, path, **params)
            assert status == 200, page
            found.extend(item.get("subject", "?") for item in page["items"])
            token = page["continuationToken"]
            if not token:
                return found


@pytest.fixture
def world(tenant: Tenant) -> World:
    """Sam (Sales) owns Acme; Globex has no owner; Sam's mailbox holds mail of both."""
    sam = tenant.add_user("sam", ("Sales",))
    acme = tenant.add_company("Acme", ["acme.example"])
    globex = tenant.add_company("Globex", ["globex.example"])
    owner = {"name": "Acme", "domains": ["acme.example"], "ownerIds": [tenant.users[sam]]}
    owner["properties"] = {"arr": 120000, "tier": "gold"}
    tenant.stack.call("PUT", f"admin/companies/{acme}", tenant.admin, json=owner)
    tenant.stack.connect_mail(tenant.token(sam)).raise_for_status()
    tenant.stack.sim.load_messages(
        sam,
        "inbox",
        [
            message("jane@acme.example", [sam], "acme one", days_ago=4),
            message("joe@globex.example", [sam], "globex one", days_ago=3),
            message("jane@acme.example", [sam, "joe@globex.example"], "both", days_ago=2),
            message("joe@globex.example", [sam], "globex two", days_ago=1),
        ],
    )
    tenant.sync()
    policy = tenant.stack.call("PUT", "admin/permissions", tenant.admin, json=SALES_ONLY_OWNED)
    assert policy.status_code == 200, policy.text
    return World(tenant, sam, acme, globex)


def test_owned_portfolio_sees_only_owned_companies(world: World) -> None:
    """A Sales user lists and reads only the companies they own; others answer 404."""
    # GIVEN a Sales user whose role sees only owned companies
    # WHEN they list companies, read both, and list both companies' emails
    listed = world.get(world.sam, "companies")
    own = world.get(world.sam, f"companies/{world.acme}")
    other = world.get(world.sam, f"companies/{world.globex}")
    other_mail = world.get(world.sam, f"companies/{world.globex}/emails")
    unknown = world.get(world.sam, "companies/00000000-0000-4000-8000-000000000000")

    # THEN only Acme is there; Globex answers exactly like a company that does not exist
    assert listed[0] == 200
    assert [c["id"] for c in listed[1]["items"]] == [world.acme]
    assert own[0] == 200
    assert own[1]["properties"] == {"arr": 120000, "tier": "gold"}
    assert other[0] == unknown[0] == other_mail[0] == 404
    assert other[1]["error"]["code"] == unknown[1]["error"]["code"] == "not_found"


def test_owned_portfolio_shared_inbox_holds_owned_companies_mail_once(world: World) -> None:
    """The shared inbox of an owned portfolio lists its companies' mail, newest first, once."""
    # GIVEN Sam's portfolio holds Acme only; an admin sees all
    # WHEN both page through the shared inbox two at a time
    sams = world.subjects(world.sam, "inbox")
    admins = world.subjects(ADMIN, "inbox")

    # THEN Sam sees Acme's mail (the email of both companies once); the admin sees everything
    assert sams == ["both", "acme one"]
    assert admins == ["globex two", "both", "globex one", "acme one"]


def test_email_outside_portfolio_is_not_found_unless_held(world: World) -> None:
    """An email of a company outside the portfolio is 404 for others, readable by its holder."""
    # GIVEN a Globex email, held by Sam's mailbox, and a second Sales user owning nothing
    status, page = world.get(ADMIN, f"companies/{world.globex}/emails")
    email_id = next(item["id"] for item in page["items"] if item["subject"] == "globex one")
    rita = world.tenant.add_user("rita", ("Sales",))

    # WHEN each reads it, and Sam reads the email filed under both companies
    by_holder = world.get(world.sam, f"emails/{email_id}")
    by_other = world.get(rita, f"emails/{email_id}")
    both_id = next(item["id"] for item in page["items"] if item["subject"] == "both")
    both = world.get(world.sam, f"emails/{both_id}")

    # THEN the holder reads it, the other gets 404, and companyIds list only owned companies
    assert status == 200
    assert by_holder[0] == 200
    assert by_holder[1]["companyIds"] == []
    assert by_other[0] == 404
    assert both[1]["companyIds"] == [world.acme]


def test_hidden_fields_are_absent_from_every_answer(world: World) -> None:
    """An Auditor sees that emails exist with dates and participants, no subject or body."""
    # GIVEN an Auditor, whose email fields are only participants and dates
    auditor = world.tenant.add_user("audrey", ("Auditor",))

    # WHEN they list Acme's emails, read one, and read Acme
    status, page = world.get(auditor, f"companies/{world.acme}/emails")
    detail = world.get(auditor, f"emails/{page['items'][0]['id']}")
    company = world.get(auditor, f"companies/{world.acme}")

    # THEN the hidden fields are missing, not blank; the visible ones are there
    assert status == 200
    assert set(page["items"][0]) == {"id", "from", "sentDateTime", "receivedDateTime"}
    assert set(detail[1]) == {"id", "from", "recipients", "sentDateTime", "receivedDateTime"}
    assert detail[1]["from"]["address"] == "jane@acme.example"
    assert company[1]["properties"] == {"tier": "gold"}
    assert "arr" not in str(company[1])


def test_shared_inbox_needs_its_workflow(world: World) -> None:
    """A role without the sharedInbox workflow is refused the shared inbox with 403."""
    # GIVEN an Auditor, whose role lists no workflows
    auditor = world.tenant.add_user("otto", ("Auditor",))

    # WHEN they open the shared inbox
    status, body = world.get(auditor, "inbox")

    # THEN it is refused, naming the workflow
    assert status == 403
    assert "sharedInbox" in body["error"]["message"]


def test_feature_access_gates_consent(world: World) -> None:
    """A role that may connect mail but not calendar is refused calendar consent only."""
    # GIVEN an Intern, whose role may connect mail only
    intern = world.tenant.add_user("ian", ("Intern",))
    token = world.tenant.token(intern)

    # WHEN they start mail consent and calendar consent
    mail = world.tenant.stack.call("POST", "me/connections/mail", token)
    calendar = world.tenant.stack.call("POST", "me/connections/calendar", token)
    mine = world.get(intern, "me/permissions")

    # THEN mail may start, calendar is forbidden, and their effective permissions say so
    assert mail.status_code == 201
    assert calendar.status_code == 403
    assert mine[1]["features"] == ["mail"]
    assert mine[1]["workflows"] == []


def test_manage_settings_workflow_opens_policy_and_tenant_rules(world: World) -> None:
    """A non-admin with manageSettings may change the policy and tenant rules; others may not."""
    # GIVEN an Ops user (manageSettings) and Sam (Sales, no such workflow)
    ops = world.tenant.add_user("olga", ("Ops",))
    rule = {
        "name": "one person",
        "conditions": [{"type": "participant", "role": "any", "addresses": ["x@acme.example"]}],
    }

    # WHEN each reads the policy and adds a tenant rule
    call = world.tenant.stack.call
    ops_policy = call("GET", "admin/permissions", world.tenant.token(ops))
    ops_rule = call("POST", "admin/rules", world.tenant.token(ops), json=rule)
    sam_policy = call("GET", "admin/permissions", world.tenant.token(world.sam))
    sam_rule = call("POST", "admin/rules", world.tenant.token(world.sam), json=rule)

    # THEN Ops may, Sam is refused
    assert ops_policy.status_code == 200
    assert ops_policy.json()["roles"]["Sales"]["portfolio"] == "owned"
    assert ops_rule.status_code == 201
    assert sam_policy.status_code == sam_rule.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"roles": {"Sales": {"portfolio": "some"}}}, "roles.Sales.portfolio"),
        ({"roles": {"Sales": {"fields": {"email": {"hidden": ["arr"]}}}}}, "roles.Sales.fields"),
        ({"roles": {"Admin": {}}}, "roles.Admin"),
        ({"roles": {"Sales": {"workflows": ["everything"]}}}, "roles.Sales.workflows[0]"),
        ({"roles": [], "default": {}}, "roles"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_policy_is_refused_naming_the_field_and_changes_nothing(
    world: World, body: dict[str, Any], field: str
) -> None:
    """An invalid policy answers 400 naming the field; the saved policy stays as it was."""
    # GIVEN the saved policy
    call = world.tenant.stack.call
    before = call("GET", "admin/permissions", world.tenant.admin).json()

    # WHEN an admin puts an invalid one
    answer = call("PUT", "admin/permissions", world.tenant.admin, json=body)

    # THEN it is refused by field and nothing changed
    assert answer.status_code == 400
    assert answer.json()["error"]["field"].startswith(field)
    assert call("GET", "admin/permissions", world.tenant.admin).json() == before


def _tables(world: World) -> TableServiceClient:
    return TableServiceClient.from_connection_string(world.tenant.stack.env["AzureWebJobsStorage"])


def _email_ids(world: World, company: str) -> dict[str, str]:
    status, page = world.get(ADMIN, f"companies/{company}/emails", pageSize=100)
    assert status == 200
    return {item["subject"]: item["id"] for item in page["items"]}


def test_an_owner_row_no_company_backs_grants_nothing(world: World) -> None:
    """An owner index row left by a write that lost its race opens no email and is removed."""
    # GIVEN Rita (Sales) owns nothing, but the owner index names her for Globex, as a company
    # write that indexed its owners and then lost its conditional update would leave it
    rita = world.tenant.add_user("rita", ("Sales",))
    rita_id = world.tenant.users[rita]
    owners = _tables(world).get_table_client("companyowners")
    stale = {
        "PartitionKey": table_key(world.tenant.tenant_id, rita_id),
        "RowKey": table_key(world.globex),
        "companyId": world.globex,
        "userId": rita_id,
    }
    owners.upsert_entity(stale)
    email = _email_ids(world, world.globex)["globex one"]

    # WHEN she reads the Globex email, the shared inbox and the company list
    detail = world.get(rita, f"emails/{email}")
    inbox = world.get(rita, "inbox")
    listed = world.get(rita, "companies")

    # THEN none of them shows Globex, and the stale row is gone
    assert detail[0] == 404
    assert inbox[1]["items"] == []
    assert listed[1]["items"] == []
    partition = table_key(world.tenant.tenant_id, rita_id)
    assert list(owners.query_entities("PartitionKey eq @pk", parameters={"pk": partition})) == []


def test_a_deleted_company_id_reused_opens_none_of_its_old_mail(world: World) -> None:
    """A company created again under a deleted company's id gains no access to its old mail."""
    # GIVEN Globex's mail, then Globex deleted and its id reused for a company Rita owns
    rita = world.tenant.add_user("rita", ("Sales",))
    emails = _email_ids(world, world.globex)
    call = world.tenant.stack.call
    call("DELETE", f"admin/companies/{world.globex}", world.tenant.admin).raise_for_status()
    reused = {"name": "New", "domains": ["new.example"], "ownerIds": [world.tenant.users[rita]]}
    call("PUT", f"admin/companies/{world.globex}", world.tenant.admin, json=reused)

    # WHEN Rita reads an old Globex email, and the admin reads the one filed under both
    old = world.get(rita, f"emails/{emails['globex one']}")
    both = world.get(ADMIN, f"emails/{emails['both']}")

    # THEN Rita gets 404 and the email no longer names the deleted company
    assert old[0] == 404
    assert both[1]["companyIds"] == [world.acme]


def test_dry_run_of_an_owned_portfolio_names_only_its_companies(world: World) -> None:
    """A settings manager who sees only owned companies learns nothing else from a dry run."""
    # GIVEN Sam, a Sales user also allowed to manage settings, who owns Acme only
    policy = {"roles": {"Sales": {"portfolio": "owned", "workflows": ["manageSettings"]}}}
    call = world.tenant.stack.call
    call("PUT", "admin/permissions", world.tenant.admin, json=policy).raise_for_status()
    mail = message("joe@globex.example", ["jane@acme.example"], "hi")
    mail["id"] = "probe"

    # WHEN Sam and the admin dry-run a message of both companies
    sams = call("POST", "admin/rules/dryrun", world.tenant.token(world.sam), json={"message": mail})
    admins = call("POST", "admin/rules/dryrun", world.tenant.admin, json={"message": mail})

    # THEN Sam's answer names Acme only; the admin's names both
    assert sams.json()["companyIds"] == [world.acme]
    assert admins.json()["companyIds"] == sorted([world.acme, world.globex])


def test_page_tokens_work_only_for_the_list_that_issued_them(world: World) -> None:
    """A continuation token of one list is refused by another, naming the parameter."""
    # GIVEN a token of the admin's shared inbox and one of Acme's email list
    _, inbox = world.get(ADMIN, "inbox", pageSize=1)
    _, acme = world.get(ADMIN, f"companies/{world.acme}/emails", pageSize=1)

    # WHEN each is used on the other list, and Acme's on Globex's
    crossed = [
        world.get(
            ADMIN, f"companies/{world.acme}/emails", continuationToken=inbox["continuationToken"]
        ),
        world.get(ADMIN, "inbox", continuationToken=acme["continuationToken"]),
        world.get(
            ADMIN, f"companies/{world.globex}/emails", continuationToken=acme["continuationToken"]
        ),
    ]

    # THEN each is refused
    for status, body in crossed:
        assert status == 400
        assert body["error"]["field"] == "continuationToken"


REVIEWER = {
    "fields": {
        "email": {"visible": ["from", "receivedDateTime"]},
        "company": {"hidden": ["properties.arr", "domains", "contacts"]},
        "event": {"visible": ["start", "end", "isAllDay"]},
    }
}
"""A role that sees every company and uses the shared inbox, through narrow field rules."""


def _add_reviewer(world: World, alias: str) -> str:
    """Add the Reviewer role to the world's policy and register a user holding it."""
    policy = {"roles": {**SALES_ONLY_OWNED["roles"], "Reviewer": REVIEWER}}
    call = world.tenant.stack.call
    call("PUT", "admin/permissions", world.tenant.admin, json=policy).raise_for_status()
    return world.tenant.add_user(alias, ("Reviewer",))


def test_hidden_fields_are_absent_from_the_shared_inbox_and_company_list(world: World) -> None:
    """A Reviewer's shared inbox and company list carry only the fields their role shows."""
    # GIVEN a Reviewer, who sees emails' sender and receive time and companies without their
    # domains, contacts and annual revenue
    reviewer = _add_reviewer(world, "rex")

    # WHEN they page through the shared inbox and list the companies
    inbox = world.get(reviewer, "inbox", pageSize=10)
    listed = world.get(reviewer, "companies")

    # THEN every email shows its id, sender and time only, and every company lacks the hidden
    # fields (the contact count goes with the contacts), Acme keeping its other property
    assert inbox[0] == 200, inbox[1]
    assert len(inbox[1]["items"]) == 4
    for item in inbox[1]["items"]:
        assert set(item) == {"id", "from", "receivedDateTime"}
    assert {item["from"]["address"] for item in inbox[1]["items"]} == {
        "jane@acme.example",
        "joe@globex.example",
    }
    assert listed[0] == 200, listed[1]
    companies = {item["id"]: item for item in listed[1]["items"]}
    assert set(companies) == {world.acme, world.globex}
    for item in companies.values():
        assert not {"domains", "contactCount", "contacts"} & set(item)
        assert {"id", "name", "ownerIds"} <= set(item)
    assert companies[world.acme]["properties"] == {"tier": "gold"}
    assert "arr" not in str(listed[1])
    assert "acme.example" not in str(listed[1])


def test_company_events_follow_the_portfolio_and_hidden_fields(world: World) -> None:
    """Events of a company outside the portfolio are 404; a Reviewer sees only their times."""
    # GIVEN Sam's calendar, synced, with a meeting of each company, and a Reviewer who sees an
    # event's times and all-day flag only
    tenant, sam = world.tenant, world.sam
    tenant.stack.connect_calendar(tenant.token(sam)).raise_for_status()
    tenant.stack.sim.add_event(sam, meeting("Acme review", sam, ["jane@acme.example"], at(3)))
    tenant.stack.sim.add_event(sam, meeting("Globex pitch", sam, ["joe@globex.example"], at(4)))
    tenant.sync()
    reviewer = _add_reviewer(world, "rae")

    # WHEN Sam lists both companies' events, and the Reviewer and the admin list Acme's
    sams_own = world.get(sam, f"companies/{world.acme}/events")
    sams_other = world.get(sam, f"companies/{world.globex}/events")
    reviewers = world.get(reviewer, f"companies/{world.acme}/events")
    admins = world.get(ADMIN, f"companies/{world.acme}/events")

    # THEN Sam reads Acme's meeting whole and finds no Globex; the Reviewer's copy holds the id
    # and the time fields, no subject, organizer, place or attendees
    assert sams_own[0] == 200, sams_own[1]
    assert [e["subject"] for e in sams_own[1]["items"]] == ["Acme review"]
    assert sams_other[0] == 404
    assert sams_other[1]["error"]["code"] == "not_found"
    assert reviewers[0] == 200, reviewers[1]
    (event,) = reviewers[1]["items"]
    assert set(event) == {
        "id",
        "isAllDay",
        "start",
        "end",
        "startDate",
        "endDate",
        "timeZone",
        "upcoming",
    }
    assert event["start"] == admins[1]["items"][0]["start"]
    assert admins[1]["items"][0]["subject"] == "Acme review"
    assert sam not in str(event)
