"""Blocking rules through the local host, Azurite and the Microsoft 365 simulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack

PENSION = {"type": "content", "field": "subjectOrBody", "phrase": "pension"}


def add_rule(tenant: Tenant, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """Create a tenant rule (or, with a user's token, that user's rule); return it."""
    path = "me/rules" if token else "admin/rules"
    response = tenant.stack.call("POST", path, token or tenant.admin, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def stored_ids(tenant: Tenant, company: str) -> set[str]:
    return {email["internetMessageId"] for email in tenant.company_emails(company)}


def connected(tenant: Tenant, alias: str) -> str:
    upn = tenant.add_user(alias)
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    return upn


def last_round(tenant: Tenant, upn: str) -> dict[str, Any]:
    items = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    return dict(items[0]["lastRound"])


def eml(sender: str, to: str, subject: str, headers: dict[str, str] | None = None) -> bytes:
    """A raw RFC 5322 message, as real mail arrives, with extra headers."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, subject
    mail["Date"] = format_datetime(datetime.now(UTC) - timedelta(hours=1))
    mail["Message-ID"] = make_msgid(domain="mail.example")
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(f"{subject}\n")
    return bytes(mail)


def test_design_example_hr_group_mentioning_pensions_is_blocked(tenant: Tenant) -> None:
    """Mail from the customer's HR group that mentions pensions is dropped; the rest is kept."""
    # GIVEN an HR address group and a rule: sender in the group AND mentions pension
    upn = connected(tenant, "ava")
    tenant.add_company("Acme", ["acme.example"])
    group = {"addresses": ["hr@acme.example", '"Doe, Jane" <jane.hr@acme.example>']}
    put = tenant.stack.call("PUT", "admin/rules/groups/acme-hr", tenant.admin, json=group)
    assert put.status_code == 200, put.text
    hr = {"type": "participant", "role": "sender", "groups": ["acme-hr"]}
    rule = add_rule(tenant, {"name": "HR pensions", "match": "all", "conditions": [hr, PENSION]})
    blocked = message("jane.hr@acme.example", [upn], "Changes to your PENSION plan")
    hr_other = message("hr@acme.example", [upn], "Team offsite")
    sales_pension = message("sales@acme.example", [upn], "Pension fund prospect")
    tenant.stack.sim.load_messages(upn, "inbox", [blocked, hr_other, sales_pension])

    # WHEN a sync round runs
    tenant.sync()

    # THEN only the HR mail about pensions is missing, and it left a decision naming the rule
    assert stored_ids(tenant, "Acme") == {
        hr_other["internetMessageId"],
        sales_pension["internetMessageId"],
    }
    assert last_round(tenant, upn)["dropped"] == {"rule": 1}
    explained = tenant.stack.call(
        "GET",
        "me/rules/explain",
        tenant.token(upn),
        params={"internetMessageId": blocked["internetMessageId"]},
    )
    assert explained.status_code == 200, explained.text
    assert explained.json()["decision"] == "dropped"
    assert explained.json()["rule"] == {"id": rule["id"], "scope": "tenant"}


def test_design_example_our_ceo_with_their_ceo_is_blocked(tenant: Tenant) -> None:
    """Mail between our CEO and their CEO is dropped; either CEO with anyone else is kept."""
    # GIVEN a rule: our CEO is a participant AND their CEO is a participant
    upn = connected(tenant, "ceo")
    tenant.add_company("Globex", ["globex.example"])
    ours = {"type": "participant", "role": "any", "addresses": [upn]}
    theirs = {"type": "participant", "role": "any", "addresses": ["ceo@globex.example"]}
    add_rule(tenant, {"name": "CEO to CEO", "conditions": [ours, theirs]})
    inbound = message("ceo@globex.example", [upn], "Merger")
    outbound = message(upn, ["ceo@globex.example"], "Re: Merger")
    with_cfo = message("cfo@globex.example", [upn], "Budget")
    tenant.stack.sim.load_messages(upn, "inbox", [inbound, with_cfo])
    tenant.stack.sim.load_messages(upn, "sentitems", [outbound])

    # WHEN a sync round runs
    tenant.sync()

    # THEN both directions between the CEOs are dropped and the CFO's mail is kept
    assert stored_ids(tenant, "Globex") == {with_cfo["internetMessageId"]}


def test_design_example_one_named_person_is_blocked_in_any_role(tenant: Tenant) -> None:
    """All mail with one named person is dropped, whether they send, receive or are copied."""
    # GIVEN a rule on one address in any role
    upn = connected(tenant, "bea")
    tenant.add_company("Initech", ["initech.example"])
    person = {"type": "participant", "role": "any", "addresses": ["Milton@Initech.example"]}
    add_rule(tenant, {"name": "Milton", "conditions": [person]})
    copied = {"ccRecipients": [{"emailAddress": {"address": "milton@initech.example"}}]}
    sent = message("milton@initech.example", [upn], "Stapler")
    received = message(upn, ["milton@initech.example"], "Re: Stapler")
    in_cc = message("bill@initech.example", [upn], "TPS", **copied)
    other = message("bill@initech.example", [upn], "Reports")
    tenant.stack.sim.load_messages(upn, "inbox", [sent, received, in_cc, other])

    # WHEN a sync round runs
    tenant.sync()

    # THEN only the mail without him is stored
    assert stored_ids(tenant, "Initech") == {other["internetMessageId"]}


def test_switches_drop_their_kind_of_mail_from_raw_headers(tenant: Tenant) -> None:
    """Each switched-on kind (auto reply, bulk, no-reply) is dropped with its reason code."""
    # GIVEN all three switches on and raw mail of each kind from a customer domain
    upn = connected(tenant, "cal")
    tenant.add_company("Hooli", ["hooli.example"])
    switches = {"automaticReplies": True, "bulkMail": True, "noReplySenders": True}
    put = tenant.stack.call("PUT", "admin/rules/switches", tenant.admin, json=switches)
    assert put.json() == {**switches, "internalOnly": True}
    raw = [
        eml("gavin@hooli.example", upn, "Out of office", {"Auto-Submitted": "auto-replied"}),
        eml("news@hooli.example", upn, "Hooli news", {"List-Id": "News <news.hooli.example>"}),
        eml("promo@hooli.example", upn, "Offers", {"Precedence": "bulk"}),
        eml("noreply@hooli.example", upn, "Your receipt"),
        eml("gavin@hooli.example", upn, "Contract"),
    ]
    for item in raw:
        tenant.stack.sim.load_eml(upn, "inbox", item)

    # WHEN a sync round runs
    tenant.sync()

    # THEN only the contract is stored, and each drop is counted under its reason
    assert [email["subject"] for email in tenant.company_emails("Hooli")] == ["Contract"]
    assert last_round(tenant, upn)["dropped"] == {
        "automatic_reply": 1,
        "bulk_mail": 2,
        "no_reply_sender": 1,
    }


def test_switches_off_keep_each_kind_in_a_dry_run(tenant: Tenant) -> None:
    """With the switches off (the default), the same kinds of mail are kept."""
    # GIVEN a customer company and default switches
    tenant.add_company("Hooli", ["hooli.example"])
    to = [{"emailAddress": {"address": f"x@{tenant.domain}"}}]
    kinds = [
        ("gavin@hooli.example", {"name": "Auto-Submitted", "value": "auto-replied"}),
        ("news@hooli.example", {"name": "List-Id", "value": "<news.hooli.example>"}),
        ("noreply@hooli.example", {"name": "X-Mailer", "value": "shop"}),
    ]
    for sender, header in kinds:
        graph = {
            "from": {"emailAddress": {"address": sender}},
            "toRecipients": to,
            "internetMessageHeaders": [header],
        }

        # WHEN each is dry-run with the saved switches, then with them all on
        off = tenant.stack.call("POST", "admin/rules/dryrun", tenant.admin, json={"message": graph})
        on_switches = {"automaticReplies": True, "bulkMail": True, "noReplySenders": True}
        on = tenant.stack.call(
            "POST",
            "admin/rules/dryrun",
            tenant.admin,
            json={"message": graph, "switches": on_switches},
        )

        # THEN it is kept when off and dropped when on
        assert off.json()["decision"] == "keep", off.text
        assert on.json()["decision"] == "drop", on.text


def test_internal_only_switch_off_keeps_internal_replies_to_customer_threads(
    tenant: Tenant,
) -> None:
    """With internalOnly off, a colleague's internal reply to a stored customer email is kept."""
    # GIVEN the switch off and a stored customer email
    upn = connected(tenant, "dan")
    tenant.add_company("Umbrella", ["umbrella.example"])
    off = tenant.stack.call(
        "PUT", "admin/rules/switches", tenant.admin, json={"internalOnly": False}
    )
    assert off.status_code == 200
    customer = message("buyer@umbrella.example", [upn], "Order")
    tenant.stack.sim.load_messages(upn, "inbox", [customer])
    tenant.sync()

    # WHEN a colleague answers it internally, and another colleague writes about lunch
    refs = [{"name": "In-Reply-To", "value": customer["internetMessageId"]}]
    reply = message(f"boss@{tenant.domain}", [upn], "Re: Order", internetMessageHeaders=refs)
    lunch = message(f"boss@{tenant.domain}", [upn], "Lunch")
    tenant.stack.sim.load_messages(upn, "inbox", [reply, lunch])
    tenant.sync()

    # THEN the reply joins the customer's emails and the lunch mail is dropped as internal
    assert stored_ids(tenant, "Umbrella") == {
        customer["internetMessageId"],
        reply["internetMessageId"],
    }
    assert last_round(tenant, upn)["dropped"] == {"internal_only": 1}


def test_or_rule_with_negation_through_sync(tenant: Tenant) -> None:
    """An OR rule blocks when either condition holds, including a negated one."""
    # GIVEN: block when (subject does not mention "order") OR (the sender is the lawyer)
    upn = connected(tenant, "eli")
    tenant.add_company("Stark", ["stark.example"])
    no_order = {"type": "content", "field": "subject", "phrase": "order", "negate": True}
    lawyer = {"type": "participant", "role": "sender", "addresses": ["legal@stark.example"]}
    add_rule(tenant, {"name": "either", "match": "any", "conditions": [no_order, lawyer]})
    kept = message("buyer@stark.example", [upn], "Order 7")
    chat = message("buyer@stark.example", [upn], "Hello")
    legal = message("legal@stark.example", [upn], "Order dispute")
    tenant.stack.sim.load_messages(upn, "inbox", [kept, chat, legal])

    # WHEN a sync round runs
    tenant.sync()

    # THEN only the order mail from the buyer is stored
    assert stored_ids(tenant, "Stark") == {kept["internetMessageId"]}


def test_user_rule_applies_to_own_mailbox_only(tenant: Tenant) -> None:
    """A user's rule drops mail in their mailbox; a colleague's copy of the same mail is kept."""
    # GIVEN Fay blocks mail mentioning pensions in her own mailbox; Gil has no rule
    fay, gil = connected(tenant, "fay"), connected(tenant, "gil")
    tenant.add_company("Wayne", ["wayne.example"])
    own = add_rule(tenant, {"name": "no pensions", "conditions": [PENSION]}, tenant.token(fay))
    shared = message("hr@wayne.example", [fay, gil], "Pension update")
    ids = tenant.stack.sim.load_messages(fay, "inbox", [shared])
    tenant.stack.sim.load_messages(gil, "inbox", [dict(shared)])

    # WHEN a sync round runs for both
    tenant.sync()

    # THEN the email is stored (from Gil's mailbox) with Gil as its only source
    assert stored_ids(tenant, "Wayne") == {shared["internetMessageId"]}
    fay_view = tenant.stack.call(
        "GET", "me/rules/explain", tenant.token(fay), params={"messageId": ids[0]}
    )
    assert fay_view.json()["decision"] == "dropped", fay_view.text
    assert fay_view.json()["rule"] == {"id": own["id"], "scope": "user", "name": "no pensions"}
    gil_view = tenant.stack.call(
        "GET",
        "me/rules/explain",
        tenant.token(gil),
        params={"internetMessageId": shared["internetMessageId"]},
    )
    assert gil_view.json()["decision"] == "kept", gil_view.text
    listed = tenant.stack.call("GET", "me/rules", tenant.token(gil)).json()["items"]
    assert listed == []


def test_explain_unknown_or_foreign_message_answers_404(tenant: Tenant, stack: Any) -> None:
    """Explain answers 404 for a message never synced, and for another tenant's message."""
    # GIVEN a dropped message in this tenant
    upn = connected(tenant, "hal")
    private = message("lawyer@law.example", [upn], "Your case")
    (item_id,) = tenant.stack.sim.load_messages(upn, "inbox", [private])
    tenant.sync()
    mine = tenant.stack.call(
        "GET", "me/rules/explain", tenant.token(upn), params={"messageId": item_id}
    )

    # WHEN an unknown id is asked for, and an admin of another tenant asks for this one
    unknown = tenant.stack.call(
        "GET", "me/rules/explain", tenant.token(upn), params={"messageId": "AAMk-unknown"}
    )
    outsider = stack.token(str(uuid.uuid4()), str(uuid.uuid4()), roles=("Admin",))
    foreign = stack.call("GET", "me/rules/explain", outsider, params={"messageId": item_id})

    # THEN the owner learns the reason; the others get 404 alike
    assert mine.json() == {
        "decision": "dropped",
        "reason": "no_customer",
        "rule": None,
        "decidedAt": mine.json()["decidedAt"],
    }
    assert unknown.status_code == 404
    assert foreign.status_code == 404


def test_decision_records_hold_no_content_or_address(tenant: Tenant) -> None:
    """A dropped message leaves only hashes, a reason and a time in storage."""
    # GIVEN a dropped private message with a distinctive subject and sender
    upn = connected(tenant, "ida")
    private = message("secret.person@law.example", [upn], "Zanzibar settlement")
    (item_id,) = tenant.stack.sim.load_messages(upn, "inbox", [private])

    # WHEN it syncs
    tenant.sync()

    # THEN its decision record holds none of its text, addresses or ids
    client = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    rows = [
        dict(row)
        for row in client.get_table_client("maildecisions").list_entities()
        if str(row["PartitionKey"]).startswith(tenant.tenant_id)
    ]
    assert len(rows) == 1
    text = repr(rows)
    for secret in ("Zanzibar", "secret.person", "law.example", item_id, "@mail.example"):
        assert secret not in text
    assert rows[0]["reason"] == "no_customer"


def test_dry_run_answers_decision_and_matching_rule(tenant: Tenant) -> None:
    """A dry run of a posted rule set names the rule that blocks a posted message."""
    # GIVEN a customer and a posted rule set (nothing saved)
    tenant.add_company("Acme", ["acme.example"])
    hr = {"type": "participant", "role": "sender", "groups": ["hr"]}
    body = {
        "message": {
            "subject": "Pension",
            "from": {"emailAddress": {"address": "hr@acme.example"}},
            "toRecipients": [{"emailAddress": {"address": f"ann@{tenant.domain}"}}],
        },
        "groups": {"hr": {"addresses": ["hr@acme.example"]}},
        "rules": [{"id": "draft-1", "name": "HR pensions", "conditions": [hr, PENSION]}],
    }

    # WHEN the admin dry-runs it
    response = tenant.stack.call("POST", "admin/rules/dryrun", tenant.admin, json=body)

    # THEN the message would be dropped by that rule, and nothing was saved
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["decision"], answer["reason"]) == ("drop", "rule")
    assert answer["rule"] == {"id": "draft-1", "scope": "tenant", "name": "HR pensions"}
    saved = tenant.stack.call("GET", "admin/rules", tenant.admin).json()["items"]
    assert saved == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "conditions": [{"type": "regex", "phrase": "a"}]}, "conditions[0].type"),
        ({"name": "x", "conditions": [{**PENSION, "phrase": " "}]}, "conditions[0].phrase"),
        (
            {
                "name": "x",
                "conditions": [{"type": "participant", "role": "any", "addresses": ["a@"]}],
            },
            "conditions[0].addresses[0]",
        ),
        (
            {
                "name": "x",
                "conditions": [{"type": "participant", "role": "any", "domains": ["-x"]}],
            },
            "conditions[0].domains[0]",
        ),
        (
            {"name": "x", "conditions": [{"type": "participant", "role": "any", "groups": ["no"]}]},
            "conditions[0].groups[0]",
        ),
        ({"name": "x", "conditions": [PENSION] * 21}, "conditions"),
        ({"name": "x", "match": "xor", "conditions": [PENSION]}, "match"),
    ],
)
def test_bad_rule_definitions_answer_400_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    """An invalid rule answers 400 naming the field and rule, and nothing is saved."""
    # WHEN an admin posts the bad definition
    response = tenant.stack.call("POST", "admin/rules", tenant.admin, json=body)

    # THEN it is refused naming the field, and no rule exists
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["rule"]
    assert tenant.stack.call("GET", "admin/rules", tenant.admin).json()["items"] == []


def test_rule_endpoints_refuse_non_admins_and_strangers(tenant: Tenant, stack: Any) -> None:
    """Tenant rules need the admin role; user rules need a registered user."""
    # GIVEN a registered member and an unregistered caller of the tenant
    member = tenant.token(tenant.add_user("joy"))
    stranger = stack.token(tenant.tenant_id, str(uuid.uuid4()))
    body = {"name": "x", "conditions": [PENSION]}

    # WHEN each calls the rule endpoints
    as_member = tenant.stack.call("POST", "admin/rules", member, json=body)
    switches = tenant.stack.call("PUT", "admin/rules/switches", member, json={})
    as_stranger = tenant.stack.call("POST", "me/rules", stranger, json=body)
    unauthenticated = tenant.stack.call("GET", "me/rules")

    # THEN they are refused
    assert as_member.status_code == 403
    assert switches.status_code == 403
    assert as_stranger.status_code == 403
    assert unauthenticated.status_code == 401


def test_rule_crud_round_trip_and_foreign_ids(tenant: Tenant, stack: Any) -> None:
    """A rule can be read, replaced and deleted; other tenants and odd ids get 404."""
    # GIVEN a tenant rule
    created = add_rule(tenant, {"name": "one", "conditions": [PENSION]})
    path = f"admin/rules/{created['id']}"

    # WHEN it is replaced, read, read by another tenant's admin, and deleted
    replaced = tenant.stack.call(
        "PUT", path, tenant.admin, json={"name": "two", "conditions": [PENSION]}
    )
    read = tenant.stack.call("GET", path, tenant.admin)
    outsider = stack.token(str(uuid.uuid4()), str(uuid.uuid4()), roles=("Admin",))
    foreign = stack.call("GET", path, outsider)
    crafted = tenant.stack.call("GET", "admin/rules/x' or RowKey ne 'a", tenant.admin)
    deleted = tenant.stack.call("DELETE", path, tenant.admin)
    again = tenant.stack.call("GET", path, tenant.admin)

    # THEN each answers as a missing rule would where it is not the tenant's own
    assert replaced.status_code == 200
    assert read.json()["name"] == "two"
    assert read.json()["id"] == created["id"]
    assert foreign.status_code == 404
    assert crafted.status_code == 404
    assert deleted.status_code == 204
    assert again.status_code == 404
