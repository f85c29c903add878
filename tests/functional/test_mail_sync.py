"""Consent, sync and read through the local host, Azurite and the Microsoft 365 simulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from devstack.consentdriver import drive_consent
from shared.adapters.tablelimits import table_key
from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def message(
    sender: str, to: list[str], subject: str, *, days_ago: float = 1, **extra: Any
) -> dict[str, Any]:
    """A Graph-shaped message as a mailbox would hold it."""
    sent = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "internetMessageId": f"<{uuid.uuid4()}@mail.example>",
        "subject": subject,
        "from": {"emailAddress": {"name": "", "address": sender}},
        "sender": {"emailAddress": {"name": "", "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "", "address": a}} for a in to],
        "sentDateTime": sent,
        "receivedDateTime": sent,
        "body": {"contentType": "html", "content": f"<p>{subject}</p>"},
        "bodyPreview": subject,
    }
    body.update(extra)
    return body


def test_consent_connects_mailbox_with_default_folders(tenant: Tenant) -> None:
    """A user who accepts consent gets an active mail connection syncing Inbox and Sent Items."""
    # GIVEN a registered user
    upn = tenant.add_user("ada")

    # WHEN they go through consent and accept
    callback = tenant.stack.connect_mail(tenant.token(upn))

    # THEN the connection is active with the two default folders
    assert callback.status_code == 200, callback.text
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert [c["state"] for c in listed] == ["active"]
    names = {f["name"] for f in listed[0]["folders"]}
    assert names == {"Inbox", "Sent Items"}


def test_consent_declined_leaves_no_connection(tenant: Tenant) -> None:
    """Declining consent answers 400 with the reason and stores no connection."""
    # GIVEN a registered user
    upn = tenant.add_user("bea")

    # WHEN they decline on the consent page
    callback = tenant.stack.connect_mail(tenant.token(upn), decision="decline")

    # THEN the callback fails with a named reason and nothing is connected
    assert callback.status_code == 400
    assert callback.json()["error"]["reason"] == "access_denied"
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert listed == []


def test_consent_replayed_state_is_refused(tenant: Tenant) -> None:
    """A callback URL used a second time is refused, and the first use still counts."""
    # GIVEN a completed consent and its callback URL
    upn = tenant.add_user("cy")
    started = tenant.stack.call("POST", "me/connections/mail", tenant.token(upn)).json()
    location = drive_consent(started["authorizeUrl"], verify=str(tenant.stack.tls.ca_pem))
    first = tenant.stack.call("GET", location.split("/api/", 1)[1])

    # WHEN the same callback is replayed
    replay = tenant.stack.call("GET", location.split("/api/", 1)[1])

    # THEN it is refused while the connection from the first use stays active
    assert first.status_code == 200
    assert replay.status_code == 400
    assert replay.json()["error"]["reason"] in {"unknown_state", "replayed_state"}
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert listed[0]["state"] == "active"


def test_consent_expired_state_is_refused(tenant: Tenant) -> None:
    """A consent completed after the state's ten minutes is refused."""
    # GIVEN a consent started, whose stored state has passed its expiry
    upn = tenant.add_user("dee")
    started = tenant.stack.call("POST", "me/connections/mail", tenant.token(upn)).json()
    location = drive_consent(started["authorizeUrl"], verify=str(tenant.stack.tls.ca_pem))
    state = location.split("state=", 1)[1].split("&", 1)[0]
    states = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    table = states.get_table_client("consentstates")
    row = table.get_entity(table_key(state), "state")
    row["expiresAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    table.update_entity(row)

    # WHEN the callback arrives
    callback = tenant.stack.call("GET", location.split("/api/", 1)[1])

    # THEN it is refused as expired and nothing is connected
    assert callback.status_code == 400
    assert callback.json()["error"]["reason"] == "expired_state"
    assert tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"] == []


def test_consent_by_another_account_is_refused(tenant: Tenant) -> None:
    """A state started by one user cannot be completed by another user's Microsoft account."""
    # GIVEN user A starts consent
    alice, bob = tenant.add_user("alice"), tenant.add_user("bob")
    started = tenant.stack.call("POST", "me/connections/mail", tenant.token(alice)).json()

    # WHEN user B signs in on the consent page and accepts
    ca = str(tenant.stack.tls.ca_pem)
    location = drive_consent(started["authorizeUrl"], user=bob, verify=ca)
    callback = tenant.stack.call("GET", location.split("/api/", 1)[1])

    # THEN the callback refuses it and neither user is connected
    assert callback.status_code == 400
    assert callback.json()["error"]["reason"] == "wrong_user"
    for upn in (alice, bob):
        assert tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"] == []


def test_sync_keeps_customer_mail_and_drops_the_rest(tenant: Tenant) -> None:
    """A sync round stores customer mail under its company and drops internal and private mail."""
    # GIVEN a connected user whose inbox holds customer, internal and private mail
    upn = tenant.add_user("eve")
    tenant.add_company("Acme", ["acme.example"], contacts=["pat@freemail.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    customer = message("buyer@eu.acme.example", [upn], "Order 1", days_ago=2)
    contact = message("pat@freemail.example", [upn], "From my phone")
    internal = message(f"boss@{tenant.domain}", [upn], "Team lunch")
    private = message("lawyer@law.example", [upn], "Your case")
    tenant.stack.sim.load_messages(upn, "inbox", [customer, contact, internal, private])

    # WHEN a sync round runs
    tenant.sync()

    # THEN only the two customer messages are stored, under Acme, newest first
    stored = tenant.company_emails("Acme")
    assert [e["internetMessageId"] for e in stored] == [
        contact["internetMessageId"],
        customer["internetMessageId"],
    ]
    rounds = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert rounds[0]["lastRound"]["kept"] == 2
    assert rounds[0]["lastRound"]["dropped"] == {"internal_only": 1, "no_customer": 1}


def test_sync_pages_and_second_round_stores_only_changes(tenant: Tenant) -> None:
    """A backfill across several delta pages stores all; the next round reads only what changed."""
    # GIVEN 60 customer messages (the stack's page size is 25, so three pages)
    upn = tenant.add_user("fay")
    tenant.add_company("Globex", ["globex.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    first = [message("a@globex.example", [upn], f"m{i}", days_ago=i / 10) for i in range(60)]
    tenant.stack.sim.load_messages(upn, "inbox", first)

    # WHEN a round runs, then two new messages arrive and another round runs
    tenant.sync()
    after_first = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"][0]
    newer = [message("b@globex.example", [upn], f"n{i}", days_ago=0.001) for i in range(2)]
    tenant.stack.sim.load_messages(upn, "inbox", newer)
    tenant.sync()
    after_second = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"][0]

    # THEN every message is stored once, and the second round saw only the two new ones
    stored = tenant.company_emails("Globex")
    assert len(stored) == 62
    assert len({e["internetMessageId"] for e in stored}) == 62
    assert after_first["lastRound"]["seen"] == 60
    assert after_first["lastRound"]["pages"] >= 3
    assert after_second["lastRound"]["seen"] == 2
    assert after_second["lastRound"]["storedNew"] == 2


def test_sync_same_email_in_two_mailboxes_is_one_record(tenant: Tenant) -> None:
    """An email both users hold is stored once for the tenant."""
    # GIVEN two connected users who both received the same customer email
    ann, ben = tenant.add_user("ann"), tenant.add_user("ben")
    tenant.add_company("Initech", ["initech.example"])
    for upn in (ann, ben):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    shared = message("cfo@initech.example", [ann, ben], "Renewal")
    tenant.stack.sim.load_messages(ann, "inbox", [shared])
    tenant.stack.sim.load_messages(ben, "inbox", [dict(shared)])

    # WHEN a sync round runs for both
    tenant.sync()

    # THEN the company has exactly one email
    stored = tenant.company_emails("Initech")
    assert [e["internetMessageId"] for e in stored] == [shared["internetMessageId"]]


def test_read_email_returns_body_of_any_size(tenant: Tenant) -> None:
    """A body larger than a table property is stored whole and read back whole."""
    # GIVEN a customer email with a 200,000-character body
    upn = tenant.add_user("gus")
    tenant.add_company("Umbrella", ["umbrella.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    big = "<p>" + "ü" * 200_000 + "</p>"
    tenant.stack.sim.load_messages(
        upn,
        "inbox",
        [message("x@umbrella.example", [upn], "Big", body={"contentType": "html", "content": big})],
    )

    # WHEN it syncs and is read through the API
    tenant.sync()
    summary = tenant.company_emails("Umbrella")[0]
    detail = tenant.stack.call("GET", f"emails/{summary['id']}", tenant.token(upn))

    # THEN the body comes back unchanged
    assert detail.status_code == 200
    assert detail.json()["body"]["content"] == big


def test_read_api_refuses_unknown_and_foreign_ids(tenant: Tenant, stack: Any) -> None:
    """Another tenant's company id answers 404, like an id that does not exist."""
    # GIVEN a company in this tenant and the admin of another tenant that is set up
    company_id = tenant.add_company("Hooli", ["hooli.example"])
    other_tenant = str(uuid.uuid4())
    other = stack.token(other_tenant, str(uuid.uuid4()), roles=("Admin",), upn="a@other.example")
    setup = {"name": "Other", "ownDomains": ["other.example"]}
    stack.call("PUT", "admin/tenant", other, json=setup).raise_for_status()

    # WHEN the outsider asks for it, and an insider asks for an unknown id
    foreign = stack.call("GET", f"companies/{company_id}/emails", other)
    unknown = stack.call("GET", f"companies/{uuid.uuid4()}/emails", tenant.admin)

    # THEN both answer 404
    assert foreign.status_code == 404
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "me/connections/mail/folders", {"folderIds": "inbox"}, "folderIds"),
        ("GET", "companies/x/emails?pageSize=0", None, "pageSize"),
        ("GET", "companies/x/emails?continuationToken=%25%25", None, "continuationToken"),
    ],
)
def test_api_bad_input_names_the_field(
    tenant: Tenant, method: str, path: str, body: Any, field: str
) -> None:
    """Malformed input answers 400 with a JSON error naming the field."""
    # GIVEN a connected user with a company to read
    upn = tenant.add_user("hal")
    company_id = tenant.add_company("Stark", ["stark.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()

    # WHEN the request is malformed
    response = tenant.stack.call(
        method, path.replace("/x/", f"/{company_id}/"), tenant.token(upn), json=body
    )

    # THEN it is refused naming the field
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_api_refuses_missing_and_bad_tokens(stack: Any) -> None:
    """Without a valid bearer token every endpoint but health answers 401."""
    # GIVEN no token, a garbage token and an unsigned token
    unsigned = "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ4Iiwib2lkIjoieSJ9."

    # WHEN each calls an authenticated endpoint
    answers = [stack.call("GET", "me/connections", token) for token in (None, "garbage", unsigned)]

    # THEN all are refused and health still answers
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert stack.call("GET", "health").status_code == 200
