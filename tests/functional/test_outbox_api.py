"""Sending through the local stack: the outbox API, the BR-09 cases, cancel, the Sent Items copy."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient

from devstack.simulator import FaultRule
from shared.adapters.tablelimits import table_key
from shared.sending.outbox import OUTBOX

if TYPE_CHECKING:
    from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack

MB = 1024 * 1024
FINAL = ("sent", "failed", "cancelled")


def connected(tenant: Tenant, alias: str, *, limit: int | None = None) -> str:
    """A consented user of a tenant with a customer company; optionally a size limit."""
    if limit is not None:
        body = {
            "name": "Test tenant",
            "ownDomains": [tenant.domain],
            "sendSizeLimitBytes": limit,
        }
        tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body).raise_for_status()
    upn = tenant.add_user(alias)
    if "Acme" not in tenant.companies:
        tenant.add_company("Acme", ["acme.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    return upn


def attachment(size: int, name: str) -> dict[str, str]:
    """A file attachment of ``size`` raw bytes."""
    content = base64.b64encode(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
    return {"name": name, "contentType": "application/pdf", "contentBytes": content.decode()}


def send(tenant: Tenant, upn: str, **fields: Any) -> Any:
    """POST an email to the caller's outbox; return the response."""
    body = {"to": ["jane@acme.example"], "subject": "Hello", "html": "<p>Hi</p>", **fields}
    return tenant.stack.call("POST", "me/outbox", tenant.token(upn), json=body)


def status(tenant: Tenant, upn: str, item_id: str) -> dict[str, Any]:
    """The outbox item's status through the API."""
    answer = tenant.stack.call("GET", f"me/outbox/{item_id}", tenant.token(upn))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_for(tenant: Tenant, upn: str, item_id: str, done: Any, timeout_s: float = 60) -> Any:
    """Poll the item's status until ``done(status)``; a postponed job keeps the queue non-empty."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = status(tenant, upn, item_id)
        if done(current):
            return current
        time.sleep(0.2)
    return current


def finished(tenant: Tenant, upn: str, item_id: str, timeout_s: float = 60) -> Any:
    """Wait until the item is sent, failed or cancelled; return its status."""
    return wait_for(tenant, upn, item_id, lambda s: s["state"] in FINAL, timeout_s)


def graph_paths(tenant: Tenant, upn: str) -> list[tuple[str, str]]:
    """(method, path) of every Graph and upload request the simulator served for a user."""
    oid = tenant.users[upn]
    seen = tenant.stack.sim.requests_seen()
    graph = [(r.method, r.path) for r in seen if r.service == "graph" and r.user == oid]
    return graph + [(r.method, r.path) for r in seen if r.service == "upload"]


def test_manual_email_is_sent_once_and_lands_in_sent_items(tenant: Tenant) -> None:
    """202 with a status URL; the worker sends it; Sent Items holds it; the status says sent."""
    # GIVEN a connected user
    upn = connected(tenant, "amy")

    # WHEN an email is posted and the worker runs
    answer = send(tenant, upn)
    item = answer.json()
    done = finished(tenant, upn, item["id"])

    # THEN the answer was 202 with where to look, and the item is sent
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == item["statusUrl"] == f"/api/me/outbox/{item['id']}"
    assert done["state"] == "sent"
    sent = tenant.stack.sim.messages(upn, "sentitems")
    assert [m["internetMessageId"] for m in sent] == [done["internetMessageId"]]
    assert tenant.stack.sim.messages(upn, "drafts") == []


def test_case_a_goes_inline_and_through_an_upload_session(tenant: Tenant) -> None:
    """BR-09 A: 1.2 MB body, a.pdf 2.9 MB inline, b.xlsx 3.6 MB by upload session, then send."""
    # GIVEN a tenant with an 8 MB limit
    upn = connected(tenant, "bea", limit=8 * MB)
    files = [attachment(int(2.9 * MB), "a.pdf"), attachment(int(3.6 * MB), "b.xlsx")]

    # WHEN case A is posted
    answer = send(tenant, upn, html="x" * int(1.2 * MB), attachments=files)
    assert answer.status_code == 202, answer.text
    done = finished(tenant, upn, answer.json()["id"])

    # THEN it is sent, each file by its path, every request under the simulator's 4 MB limit
    assert done["state"] == "sent"
    paths = graph_paths(tenant, upn)
    posts = [p for m, p in paths if m == "POST"]
    assert sum(p.endswith("/me/messages") for p in posts) == 1
    assert sum(p.endswith("/attachments") for p in posts) == 1
    assert sum(p.endswith("/createUploadSession") for p in posts) == 1
    assert sum(p.endswith("/send") for p in posts) == 1
    assert sum(m == "PUT" for m, _ in paths) == 2
    sent = tenant.stack.sim.messages(upn, "sentitems")[0]
    stored = tenant.stack.sim.attachments(upn, sent["id"])
    assert [(a["name"], a["size"]) for a in stored] == [
        ("a.pdf", int(2.9 * MB)),
        ("b.xlsx", int(3.6 * MB)),
    ]


def test_case_b_small_attachment_never_uses_an_upload_session(tenant: Tenant) -> None:
    """BR-09 B: 0.1 MB body and a 0.6 MB attachment: inline, no upload session."""
    # GIVEN a connected user
    upn = connected(tenant, "cyd")

    # WHEN case B is posted
    files = [attachment(int(0.6 * MB), "small.pdf")]
    answer = send(tenant, upn, html="x" * int(0.1 * MB), attachments=files)
    done = finished(tenant, upn, answer.json()["id"])

    # THEN it is sent with one inline attachment
    assert done["state"] == "sent"
    posts = [p for m, p in graph_paths(tenant, upn) if m == "POST"]
    assert not any(p.endswith("/createUploadSession") for p in posts)
    assert sum(p.endswith("/attachments") for p in posts) == 1


def test_case_c_over_the_limit_is_refused_before_any_graph_call(tenant: Tenant) -> None:
    """BR-09 C: 8.1 MB raw is 413 naming the limit, with no Graph request and no draft."""
    # GIVEN a tenant with an 8 MB limit
    upn = connected(tenant, "dee", limit=8 * MB)
    before = graph_paths(tenant, upn)

    # WHEN case C is posted
    files = [attachment(2 * MB, f"f{i}.pdf") for i in range(4)]
    answer = send(tenant, upn, html="x" * int(0.1 * MB), attachments=files)

    # THEN it is refused with 413 and Graph saw nothing
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["field"] == "body"
    assert str(8 * MB) in answer.json()["error"]["rule"]
    assert graph_paths(tenant, upn) == before
    assert tenant.stack.sim.messages(upn, "drafts") == []


def test_case_d_body_over_4_mb_is_refused_before_any_graph_call(tenant: Tenant) -> None:
    """BR-09 D: a 4.2 MB body fits 8 MB but no draft request: 413 naming html, no draft."""
    # GIVEN a tenant with an 8 MB limit
    upn = connected(tenant, "eve", limit=8 * MB)
    before = graph_paths(tenant, upn)

    # WHEN case D is posted
    answer = send(tenant, upn, html="<img src='data:image/png;base64," + "A" * int(4.2 * MB))

    # THEN it is refused before Graph
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["field"] == "html"
    assert graph_paths(tenant, upn) == before


def test_default_limit_is_2_mb_and_more_than_8_mb_cannot_be_set(tenant: Tenant) -> None:
    """2.5 MB is over the default 2 MB; a limit of 9 MB is refused naming the setting."""
    # GIVEN a connected user under the default settings
    upn = connected(tenant, "fay")

    # WHEN 2.5 MB is posted, and an admin tries a 9 MB limit
    over = send(tenant, upn, attachments=[attachment(int(2.5 * MB), "c.pdf")])
    body = {"name": "T", "ownDomains": [tenant.domain], "sendSizeLimitBytes": 9 * MB}
    setting = tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body)

    # THEN both are refused
    assert over.status_code == 413
    assert setting.status_code == 400
    assert setting.json()["error"]["field"] == "sendSizeLimitBytes"
    shown = tenant.stack.call("GET", "admin/tenant", tenant.admin).json()
    assert shown["sendSizeLimitBytes"] == 2 * MB
    assert shown["dailyAutomaticLimit"] == 200


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": ["not an address"]}, "to[0]"),
        ({"to": [], "cc": []}, "to"),
        (
            {"attachments": [{"name": "a.txt", "contentBytes": "%%%"}]},
            "attachments[0].contentBytes",
        ),
        ({"replyTo": "0" * 64}, "replyTo"),
    ],
)
def test_bad_input_is_400_naming_the_field(tenant: Tenant, fields: Any, field: str) -> None:
    """Invalid addresses, no recipients, bad base64, a reply to an unseen email: 400, no item."""
    # GIVEN a connected user
    upn = connected(tenant, "gus")

    # WHEN a bad email is posted
    answer = send(tenant, upn, **fields)

    # THEN it is refused naming the field, and nothing reached Graph
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field
    assert not any(p.endswith("/me/messages") for _, p in graph_paths(tenant, upn))


def test_queued_automatic_email_can_be_cancelled_and_is_never_sent(tenant: Tenant) -> None:
    """An automatic email held by do-not-disturb hours is cancelled; a manual one cannot be."""
    # GIVEN do-not-disturb hours covering now, whatever the time of day
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(hours=1)).strftime("%H:%M"),
        (now + timedelta(hours=1)).strftime("%H:%M"),
    )
    body = {
        "name": "Test tenant",
        "ownDomains": [tenant.domain],
        "doNotDisturb": {"start": start, "end": end, "timeZone": "sender"},
    }
    tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body).raise_for_status()
    upn = connected(tenant, "hal")
    tenant.stack.sim.set_mailbox_time_zone(upn, "UTC")

    # WHEN an automatic email is posted, the worker postpones it, and the user cancels it
    item = send(tenant, upn, kind="automatic", sequenceId="seq-1").json()
    waiting = wait_for(tenant, upn, item["id"], lambda s: s["notBefore"] is not None)
    cancelled = tenant.stack.call("DELETE", f"me/outbox/{item['id']}", tenant.token(upn))

    # THEN it waited, queued, and is now cancelled; nothing was created in the mailbox
    assert waiting["notBefore"] is not None
    assert waiting["state"] == "queued"
    assert cancelled.status_code == 200, cancelled.text
    assert status(tenant, upn, item["id"])["state"] == "cancelled"
    assert tenant.stack.sim.messages(upn, "drafts") == []
    assert tenant.stack.sim.messages(upn, "sentitems") == []


def test_manual_email_cannot_be_cancelled(tenant: Tenant) -> None:
    """DELETE of a manual email answers 409."""
    # GIVEN a sent manual email
    upn = connected(tenant, "ian")
    item = send(tenant, upn).json()
    finished(tenant, upn, item["id"])

    # WHEN it is cancelled
    answer = tenant.stack.call("DELETE", f"me/outbox/{item['id']}", tenant.token(upn))

    # THEN it is refused
    assert answer.status_code == 409


def test_throttled_send_is_retried_and_sent_once(tenant: Tenant) -> None:
    """A 429 on send puts the job back after Retry-After; it is then sent exactly once."""
    # GIVEN a connected user whose first send is throttled with a wait too long to sleep on
    upn = connected(tenant, "joy")
    rule = FaultRule(path=r"/send$", status=429, user=upn, headers={"Retry-After": "11"})
    tenant.stack.sim.add_fault(rule)

    # WHEN an email is posted and the queue drains
    item = send(tenant, upn).json()
    done = finished(tenant, upn, item["id"], timeout_s=120)

    # THEN it was sent once
    assert done["state"] == "sent"
    assert len(tenant.stack.sim.messages(upn, "sentitems")) == 1
    sends = [p for m, p in graph_paths(tenant, upn) if m == "POST" and p.endswith("/send")]
    assert len(sends) == 2


def test_sent_email_syncs_back_from_sent_items_as_one_record(tenant: Tenant) -> None:
    """The sent message and its Sent Items copy are one email, under the outbox's emailId."""
    # GIVEN a sent email to a customer
    upn = connected(tenant, "kim")
    item = send(tenant, upn, subject="Proposal").json()
    email_id = finished(tenant, upn, item["id"])["emailId"]

    # WHEN the mailbox syncs, twice
    tenant.sync()
    tenant.sync()

    # THEN the company holds it once, under the id the outbox gave
    emails = [e for e in tenant.company_emails("Acme") if e["subject"] == "Proposal"]
    assert [e["id"] for e in emails] == [email_id]


def test_reply_to_a_synced_email_joins_its_thread(tenant: Tenant) -> None:
    """replyTo names a synced email the user holds: the reply is drafted in its thread."""
    # GIVEN a customer's email synced from the user's inbox
    upn = connected(tenant, "lou")
    original = {
        "subject": "Question",
        "internetMessageId": f"<q-{tenant.tenant_id[:8]}@acme.example>",
        "body": {"contentType": "text", "content": "Can you help?"},
        "from": {"emailAddress": {"name": "Jane", "address": "jane@acme.example"}},
        "toRecipients": [{"emailAddress": {"address": upn}}],
        "receivedDateTime": "2026-11-30T09:00:00Z",
    }
    tenant.stack.sim.add_message(upn, "inbox", original)
    tenant.sync()
    synced = tenant.company_emails("Acme")[0]

    # WHEN the user replies to it through the outbox
    item = send(tenant, upn, subject="RE: Question", replyTo=synced["id"]).json()
    done = finished(tenant, upn, item["id"])

    # THEN the sent message sits in the original's conversation and names it as its parent
    assert done["state"] == "sent"
    sent = tenant.stack.sim.messages(upn, "sentitems")[0]
    inbox = tenant.stack.sim.messages(upn, "inbox")[0]
    assert sent["conversationId"] == inbox["conversationId"]
    headers = tenant.stack.sim.internet_headers(upn, sent["id"])
    assert headers["In-Reply-To"] == original["internetMessageId"]


def test_another_users_outbox_item_is_not_found(tenant: Tenant) -> None:
    """A user cannot read or cancel a colleague's outbox item: 404 as for an unknown id."""
    # GIVEN a colleague's queued automatic email
    upn = connected(tenant, "max")
    other = connected(tenant, "ned")
    item = send(tenant, upn).json()

    # WHEN the other user reads and cancels it
    read = tenant.stack.call("GET", f"me/outbox/{item['id']}", tenant.token(other))
    cancel = tenant.stack.call("DELETE", f"me/outbox/{item['id']}", tenant.token(other))

    # THEN both answer 404, and the owner's item goes on
    assert (read.status_code, cancel.status_code) == (404, 404)
    assert finished(tenant, upn, item["id"])["state"] == "sent"


def _outbox_rows(tenant: Tenant, upn: str) -> list[dict[str, Any]]:
    """The outbox rows the product recorded for one user, read straight from Azurite."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    rows = service.get_table_client(OUTBOX).query_entities(
        "PartitionKey eq @pk and userId eq @user",
        parameters={"pk": table_key(tenant.tenant_id), "user": tenant.users[upn]},
    )
    return [dict(row) for row in rows]


def test_automatic_email_needs_the_automatic_emails_workflow(tenant: Tenant) -> None:
    """A role without automaticEmails is refused automatic email, queues nothing, sends manual."""
    # GIVEN a connected user whose only role is listed without the automaticEmails workflow
    policy = {"roles": {"Member": {"workflows": ["sharedInbox"]}}}
    tenant.stack.call("PUT", "admin/permissions", tenant.admin, json=policy).raise_for_status()
    upn = connected(tenant, "pia")

    # WHEN they post an automatic email, then a manual one
    automatic = send(tenant, upn, kind="automatic", sequenceId="seq-1", subject="Auto")
    manual = send(tenant, upn, kind="manual", subject="By hand")
    done = finished(tenant, upn, manual.json()["id"])

    # THEN the automatic one is refused naming the workflow and left no outbox item; the manual
    # one is the only item and was sent
    assert automatic.status_code == 403, automatic.text
    assert automatic.json()["error"]["code"] == "forbidden"
    assert "automaticEmails" in automatic.json()["error"]["message"]
    assert manual.status_code == 202, manual.text
    assert [row["RowKey"] for row in _outbox_rows(tenant, upn)] == [manual.json()["id"]]
    assert done["state"] == "sent"
    assert [m["subject"] for m in tenant.stack.sim.messages(upn, "sentitems")] == ["By hand"]
