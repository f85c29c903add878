"""Replies through the outbox on the local stack: unseen originals refused, answers kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tablelimits import table_key
from tests.functional.conftest import new_tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_outbox_api import finished, graph_paths, send

if TYPE_CHECKING:
    from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack

OWNED_ONLY = {"roles": {"Sales": {"portfolio": "owned"}}}


def outbox_rows(tenant: Tenant, upn: str) -> list[dict[str, Any]]:
    """The outbox rows a user has in the product's table."""
    client = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    rows = client.get_table_client("outbox").query_entities(
        "PartitionKey eq @pk and userId eq @user",
        parameters={"pk": table_key(tenant.tenant_id), "user": tenant.users[upn]},
    )
    return list(rows)


def synced_email(tenant: Tenant, upn: str, company: str, sender: str, subject: str) -> str:
    """Put a customer's email in a user's inbox, sync, and return its stored id."""
    tenant.stack.sim.add_message(upn, "inbox", message(sender, [upn], subject))
    tenant.sync()
    found = [e["id"] for e in tenant.company_emails(company) if e["subject"] == subject]
    assert len(found) == 1, found
    return str(found[0])


def refusal(answer: Any) -> tuple[int, str, str, str]:
    """What a refused outbox post says: status, code, field and rule."""
    error = answer.json()["error"]
    return answer.status_code, error["code"], error.get("field", ""), error.get("rule", "")


def test_reply_to_an_email_outside_the_portfolio_answers_as_an_unknown_id(
    tenant: Tenant,
) -> None:
    """A reply to a colleague's email of a company the caller may not see is like a bad id."""
    # GIVEN Sam (Sales, owned companies only) who owns Acme, and Bob whose mailbox synced an
    # email from Globex and one from Acme
    tenant.stack.call("PUT", "admin/permissions", tenant.admin, json=OWNED_ONLY).raise_for_status()
    sam, bob = tenant.add_user("sam", ("Sales",)), tenant.add_user("bob")
    acme = tenant.add_company("Acme", ["acme.example"])
    tenant.add_company("Globex", ["globex.example"])
    owned = {"name": "Acme", "domains": ["acme.example"], "ownerIds": [tenant.users[sam]]}
    tenant.stack.call("PUT", f"admin/companies/{acme}", tenant.admin, json=owned)
    for upn in (sam, bob):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    globex_mail = synced_email(tenant, bob, "Globex", "joe@globex.example", "Globex order")
    acme_mail = synced_email(tenant, bob, "Acme", "jane@acme.example", "Acme order")

    # WHEN Sam replies to the Globex email, to an id that does not exist, and to the Acme email
    hidden = send(tenant, sam, to=["joe@globex.example"], replyTo=globex_mail)
    unknown = send(tenant, sam, to=["joe@globex.example"], replyTo="0" * 64)
    allowed = send(tenant, sam, to=["jane@acme.example"], replyTo=acme_mail)

    # THEN the hidden email is refused exactly as the unknown id is, and nothing was queued or
    # drafted for it; the email of his own portfolio is accepted (the set-up lets a reply pass)
    assert refusal(hidden) == refusal(unknown)
    assert refusal(hidden)[:3] == (400, "invalid_input", "replyTo")
    assert allowed.status_code == 202, allowed.text
    assert [row["RowKey"] for row in outbox_rows(tenant, sam)] == [allowed.json()["id"]]
    assert finished(tenant, sam, allowed.json()["id"])["state"] == "sent"
    drafts = [p for m, p in graph_paths(tenant, sam) if m == "POST" and p.endswith("/messages")]
    assert len(drafts) == 1


def test_reply_to_another_tenants_email_answers_as_an_unknown_id(tenant: Tenant) -> None:
    """A reply naming an email stored for another tenant is refused like a bad id, unqueued."""
    # GIVEN another tenant whose user synced a customer email, and a user of this tenant
    other = new_tenant(tenant.stack)
    other.add_company("Acme", ["acme.example"])
    olga = other.add_user("olga")
    other.stack.connect_mail(other.token(olga)).raise_for_status()
    foreign = synced_email(other, olga, "Acme", "jane@acme.example", "Their order")
    tenant.add_company("Acme", ["acme.example"])
    ann = tenant.add_user("ann")
    tenant.stack.connect_mail(tenant.token(ann)).raise_for_status()

    # WHEN Ann replies to the other tenant's email, and to an id that does not exist
    crossed = send(tenant, ann, replyTo=foreign)
    unknown = send(tenant, ann, replyTo="f" * 64)

    # THEN both answer alike, nothing is queued, and Graph saw no draft
    assert refusal(crossed) == refusal(unknown)
    assert refusal(crossed)[:3] == (400, "invalid_input", "replyTo")
    assert outbox_rows(tenant, ann) == []
    assert not any(p.endswith("/me/messages") for _, p in graph_paths(tenant, ann))


def test_customer_reply_to_a_sent_email_is_stored_in_its_thread(tenant: Tenant) -> None:
    """After a send, the customer's answer syncs in as usual, under the company, in the thread."""
    # GIVEN an email sent to a customer through the outbox, synced back from Sent Items
    tenant.add_company("Acme", ["acme.example"])
    ann = tenant.add_user("ann")
    tenant.stack.connect_mail(tenant.token(ann)).raise_for_status()
    item = send(tenant, ann, subject="Proposal").json()
    done = finished(tenant, ann, item["id"])
    sent = tenant.stack.sim.messages(ann, "sentitems")[0]

    # WHEN the customer answers in the same conversation and the mailbox syncs
    answer = message(
        "jane@acme.example",
        [ann],
        "RE: Proposal",
        days_ago=0,
        conversationId=sent["conversationId"],
        internetMessageHeaders=[{"name": "In-Reply-To", "value": done["internetMessageId"]}],
    )
    tenant.stack.sim.add_message(ann, "inbox", answer)
    tenant.sync()

    # THEN Acme holds the sent email under the outbox's id and the answer once, and both are
    # one conversation
    assert done["state"] == "sent"
    stored = {e["subject"]: e for e in tenant.company_emails("Acme")}
    assert sorted(stored) == ["Proposal", "RE: Proposal"]
    assert stored["Proposal"]["id"] == done["emailId"]
    assert stored["RE: Proposal"]["internetMessageId"] == answer["internetMessageId"]
    full = {
        subject: tenant.stack.call("GET", f"emails/{e['id']}", tenant.admin).json()
        for subject, e in stored.items()
    }
    assert full["RE: Proposal"]["conversationId"] == sent["conversationId"]
    assert full["Proposal"]["conversationId"] == sent["conversationId"]
    assert full["RE: Proposal"]["companyIds"] == [tenant.companies["Acme"]]
