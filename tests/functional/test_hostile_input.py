"""Faults a newcomer found by attacking the stack, each turned into the behaviour we promise."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import connected, last_round

pytestmark = pytest.mark.stack


def _queue(tenant: Tenant, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        tenant.stack.env["AzureWebJobsStorage"],
        name,
        message_encode_policy=TextBase64EncodePolicy(),
    )


def _job(tenant: Tenant, upn: str) -> str:
    return json.dumps({"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]})


def test_connection_in_error_heals_on_next_round(tenant: Tenant) -> None:
    """A connection marked error by a poisoned job syncs again on the next slot."""
    # GIVEN a connection whose job was poisoned
    upn = connected(tenant, "una", "Acme", "acme.example")
    _queue(tenant, "mail-sync-poison").send_message(_job(tenant, upn))
    tenant.stack.run_function("poison_sweep")
    tenant.stack.wait_idle(queues=("mail-sync-poison",))
    assert last_round(tenant, upn)["state"] == "error"

    # WHEN new mail arrives and a round runs
    mail = message("a@acme.example", [upn], "after the outage")
    tenant.stack.sim.load_messages(upn, "inbox", [mail])
    tenant.sync()

    # THEN it synced and is active again
    state = last_round(tenant, upn)
    assert state["state"] == "active"
    assert state["lastError"] is None
    assert [e["internetMessageId"] for e in tenant.company_emails("Acme")] == [
        mail["internetMessageId"]
    ]


def test_huge_display_name_is_stored_and_does_not_block_mailbox(tenant: Tenant) -> None:
    """A 40,000-character sender name is stored whole; the mail after it syncs as usual."""
    # GIVEN a message with an enormous display name, and an ordinary one
    upn = connected(tenant, "vic", "Acme", "acme.example")
    odd = message("big@acme.example", [upn], "odd", days_ago=2)
    odd["from"] = {"emailAddress": {"address": "big@acme.example", "name": "N" * 40_000}}
    plain = message("a@acme.example", [upn], "plain", days_ago=1)
    tenant.stack.sim.load_messages(upn, "inbox", [odd, plain])

    # WHEN a round runs
    tenant.sync()

    # THEN both are stored, and the odd one reads back whole
    stored = tenant.company_emails("Acme")
    assert [e["subject"] for e in stored] == ["plain", "odd"]
    detail = tenant.stack.call("GET", f"emails/{stored[1]['id']}", tenant.token(upn)).json()
    assert detail["from"]["name"] == "N" * 40_000
    assert last_round(tenant, upn)["state"] == "active"


def test_messages_of_odd_shapes_do_not_block_the_mailbox(tenant: Tenant) -> None:
    """Messages whose fields have other JSON types are stored or dropped; the rest syncs on."""
    # GIVEN messages whose body is a string, Message-ID a number, recipients a number and
    # subject a list, before an ordinary message
    upn = connected(tenant, "oda", "Acme", "acme.example")
    odd = [message("a@acme.example", [upn], f"odd {n}", days_ago=3) for n in range(4)]
    odd[0]["body"] = "not an object"
    odd[1]["internetMessageId"] = 12345
    odd[2]["toRecipients"] = 7
    odd[3]["subject"] = ["not", "text"]
    plain = message("a@acme.example", [upn], "plain", days_ago=1)
    tenant.stack.sim.load_messages(upn, "inbox", [*odd, plain])

    # WHEN a round runs, and another after it
    tenant.sync()
    first = last_round(tenant, upn)
    tenant.sync()

    # THEN the ordinary message is stored, every odd one is stored or counted as dropped, the
    # round completed and the next round reads nothing again
    subjects = [e["subject"] for e in tenant.company_emails("Acme")]
    assert "plain" in subjects
    record = first["lastRound"]
    assert (record["complete"], first["state"]) == (True, "active")
    assert record["kept"] + sum(record["dropped"].values()) == 5
    assert last_round(tenant, upn)["lastRound"]["seen"] == 0


def test_duplicate_jobs_do_not_poison_a_healthy_connection(tenant: Tenant) -> None:
    """Seven copies of one job leave the connection active and the poison queue empty."""
    # GIVEN a connected mailbox with mail
    upn = connected(tenant, "wes", "Acme", "acme.example")
    batch = [message("a@acme.example", [upn], f"m{i}", days_ago=i + 1) for i in range(30)]
    tenant.stack.sim.load_messages(upn, "inbox", batch)
    poison = _queue(tenant, "mail-sync-poison")
    before = poison.get_queue_properties().approximate_message_count

    # WHEN the same job is delivered seven times at once
    queue = _queue(tenant, "mail-sync")
    for _ in range(7):
        queue.send_message(_job(tenant, upn))
    tenant.stack.wait_idle(timeout_s=180)

    # THEN the mail is stored once, the connection is active, and nothing was poisoned
    assert len(tenant.company_emails("Acme")) == 30
    assert last_round(tenant, upn)["state"] == "active"
    assert poison.get_queue_properties().approximate_message_count == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"name": "Cust\\ud800", "domains": ["cust.example"]}', "name"),
        (
            '{"name": "Cust", "domains": ["cust.example"], "contacts": ["a\\udfff@x.example"]}',
            "contacts[0]",
        ),
        ("[" * 100_000, "body"),
    ],
)
def test_company_write_refuses_invalid_text_and_writes_nothing(
    tenant: Tenant, body: str, field: str
) -> None:
    """Lone surrogates and absurd nesting answer 400 naming the field, and nothing is stored."""
    # GIVEN a tenant with no companies
    headers = {"Content-Type": "application/json"}

    # WHEN the admin sends the malformed document
    answer = tenant.stack.call("POST", "admin/companies", tenant.admin, data=body, headers=headers)

    # THEN it is refused by name and nothing was written
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    listed = tenant.stack.call("GET", "admin/companies", tenant.admin).json()["items"]
    assert listed == []


def test_json_endpoint_refuses_other_content_types(tenant: Tenant) -> None:
    """A JSON endpoint answers 415 to a form or plain-text body."""
    # GIVEN a valid company document sent as a form
    body = json.dumps({"name": "Cust", "domains": ["cust.example"]})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    # WHEN it is posted
    answer = tenant.stack.call("POST", "admin/companies", tenant.admin, data=body, headers=headers)

    # THEN it is refused as unsupported
    assert answer.status_code == 415
    assert answer.json()["error"]["field"] == "Content-Type"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("pageSize=²", "pageSize"),
        (
            "continuationToken="
            + base64.urlsafe_b64encode(b'{"PartitionKey": "\\ud800"}').decode(),
            "continuationToken",
        ),
    ],
)
def test_read_api_refuses_odd_paging_input(tenant: Tenant, query: str, field: str) -> None:
    """A superscript digit as page size and a token hiding a lone surrogate answer 400."""
    # GIVEN a company
    company_id = tenant.add_company("Paging", ["paging.example"])

    # WHEN its emails are listed with the odd input
    answer = tenant.stack.call("GET", f"companies/{company_id}/emails?{query}", tenant.admin)

    # THEN it is refused naming the parameter
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def test_unregistered_user_cannot_read_mail(tenant: Tenant) -> None:
    """A valid token for a user no admin registered gets 403 from the read API."""
    # GIVEN a company with stored mail, and a token for an unregistered user
    upn = connected(tenant, "xia", "Acme", "acme.example")
    tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "secret")])
    tenant.sync()
    email_id = tenant.company_emails("Acme")[0]["id"]
    stranger = tenant.stack.token(tenant.tenant_id, str(uuid.uuid4()))
    company = tenant.companies["Acme"]

    # WHEN the stranger reads
    answers = [
        tenant.stack.call("GET", path, stranger)
        for path in (f"companies/{company}", f"companies/{company}/emails", f"emails/{email_id}")
    ]

    # THEN every read is forbidden
    assert [a.status_code for a in answers] == [403, 403, 403]


def test_recreated_company_id_starts_without_old_mail(tenant: Tenant) -> None:
    """A company deleted and created again under its id does not inherit the old emails."""
    # GIVEN a company with stored mail
    upn = connected(tenant, "yan", "Acme", "acme.example")
    tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "old")])
    tenant.sync()
    company = tenant.companies["Acme"]
    assert len(tenant.company_emails("Acme")) == 1

    # WHEN it is deleted and another company is created under the same id
    assert (
        tenant.stack.call("DELETE", f"admin/companies/{company}", tenant.admin).status_code == 204
    )
    body = {"name": "Someone else", "domains": ["unrelated.example"]}
    tenant.stack.call(
        "PUT", f"admin/companies/{company}", tenant.admin, json=body
    ).raise_for_status()

    # THEN its email list is empty
    assert tenant.company_emails("Acme") == []


def test_company_id_in_any_case_lists_the_same_mail(tenant: Tenant) -> None:
    """A company id in upper case lists the same emails as in lower case."""
    # GIVEN a company with stored mail
    upn = connected(tenant, "zed", "Acme", "acme.example")
    tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "x")])
    tenant.sync()
    company = tenant.companies["Acme"]

    # WHEN it is listed by the upper-case id
    upper = tenant.stack.call("GET", f"companies/{company.upper()}/emails", tenant.admin).json()

    # THEN the answer is the same
    assert [e["id"] for e in upper["items"]] == [e["id"] for e in tenant.company_emails("Acme")]


def test_company_at_own_domain_is_refused(tenant: Tenant) -> None:
    """A related domain at or under the tenant's own domain answers 400 naming it."""
    # GIVEN / WHEN the admin creates a company at a subdomain of the tenant's own domain
    body = {"name": "Ourselves", "domains": ["ok.example", f"eu.{tenant.domain}"]}
    answer = tenant.stack.call("POST", "admin/companies", tenant.admin, json=body)

    # THEN it is refused naming the domain
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "domains[1]"
