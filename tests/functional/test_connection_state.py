"""Connection state as the admin listing shows it: state, last round, explained last error."""

from __future__ import annotations

import uuid

import pytest

from devstack.simulator import FaultRule
from shared.sync.explain import explain
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack


def test_admin_listing_shows_last_round_of_each_connection(tenant: Tenant) -> None:
    """After a round, each connection shows active, when it synced, and what it kept and dropped."""
    # GIVEN a connected user with one customer and two internal messages, synced once
    tenant.add_company("Acme", ["acme.example"])
    upn = tenant.add_user("sam")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    mail = [message("a@acme.example", [upn], "Order")]
    mail += [message(f"boss@{tenant.domain}", [upn], f"Lunch {i}") for i in range(2)]
    tenant.stack.sim.load_messages(upn, "inbox", mail)
    tenant.sync()

    # WHEN the admin lists the tenant's connections
    response = tenant.stack.call("GET", "admin/connections", tenant.admin)

    # THEN the connection is listed with who it is and its last round
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert (item["userId"], item["upn"], item["state"]) == (tenant.users[upn], upn, "active")
    assert item["lastSyncAt"]
    assert (item["kept"], item["dropped"]) == (1, 2)
    assert (item["lastError"], item["explanation"]) == (None, None)


def test_admin_listing_explains_a_connection_microsoft_refused(tenant: Tenant) -> None:
    """A refresh token expired for inactivity shows reauth_required and what to do, in words."""
    # GIVEN a connected user whose refresh token Microsoft now refuses for inactivity
    upn = tenant.add_user("tom")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.stack.sim.revoke_refresh_tokens(upn, error_code=700082)
    # Past the cached access token's hour, so the round must use the refused refresh token.
    tenant.stack.sim.advance_time(2 * 3600)

    # WHEN a round runs and the admin lists the connections
    tenant.sync()
    [item] = tenant.stack.call("GET", "admin/connections", tenant.admin).json()["items"]

    # THEN the state, the code and a plain explanation with the next step are shown
    assert (item["state"], item["lastError"]) == ("reauth_required", "invalid_grant:700082")
    assert item["lastErrorAt"]
    assert "90 days" in item["explanation"]["summary"]
    assert "Connect your mailbox again" in item["explanation"]["action"]


def test_admin_listing_pages_with_a_continuation_token(tenant: Tenant) -> None:
    """Connections come a page at a time; the token leads to the rest and then ends."""
    # GIVEN three connected users
    upns = [tenant.add_user(name) for name in ("uli", "val", "wes")]
    for upn in upns:
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()

    # WHEN the admin pages through with a page size of 2
    first = tenant.stack.call("GET", "admin/connections", tenant.admin, params={"pageSize": 2})
    token = first.json()["continuationToken"]
    params = {"pageSize": 2, "continuationToken": token}
    second = tenant.stack.call("GET", "admin/connections", tenant.admin, params=params)

    # THEN the two pages hold the three connections once, and the last page has no token
    seen = [i["upn"] for i in first.json()["items"] + second.json()["items"]]
    assert sorted(seen) == sorted(upns)
    assert "continuationToken" not in second.json()


def test_admin_listing_refuses_members_and_bad_input(tenant: Tenant) -> None:
    """A member gets 403; a bad page size or token gets 400 naming the field."""
    # GIVEN a member of the tenant
    upn = tenant.add_user("xia")

    # WHEN they, and then the admin with bad parameters, call the listing
    member = tenant.stack.call("GET", "admin/connections", tenant.token(upn))
    size = tenant.stack.call("GET", "admin/connections", tenant.admin, params={"pageSize": 0})
    forged = tenant.stack.call(
        "GET", "admin/connections", tenant.admin, params={"continuationToken": "bm9wZQ"}
    )

    # THEN
    assert member.status_code == 403
    assert (size.status_code, size.json()["error"]["field"]) == (400, "pageSize")
    assert (forged.status_code, forged.json()["error"]["field"]) == (400, "continuationToken")


def test_admin_listing_shows_only_the_callers_tenant(tenant: Tenant) -> None:
    """An admin of another tenant sees none of this tenant's connections."""
    # GIVEN a connected user here and an admin of another tenant
    upn = tenant.add_user("yan")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    other = tenant.stack.token(str(uuid.uuid4()), str(uuid.uuid4()), roles=("Admin",))

    # WHEN the other admin lists connections
    response = tenant.stack.call("GET", "admin/connections", other)

    # THEN the list is empty
    assert response.status_code == 200
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    "code",
    [
        "invalid_grant:700082",
        "invalid_grant:50173",
        "invalid_grant:65001",
        "interaction_required",
        "job_poisoned",
        "no_token",
        "no_account",
        "token_cache_unreadable",
        "throttled",
        "delta_reset_backoff",
    ],
)
def test_explain_knows_every_code_the_product_records(code: str) -> None:
    """Each code the product records has its own one-sentence explanation and action."""
    # GIVEN / WHEN
    explanation = explain(code)

    # THEN it is specific, not the generic text that quotes the code
    assert explanation is not None
    assert code not in explanation.summary
    assert explanation.summary.endswith(".")
    assert explanation.action.endswith(".")


def test_explain_falls_back_to_the_error_then_to_a_generic_text() -> None:
    """An AADSTS number we do not list uses its error's text; an unknown code is quoted."""
    # GIVEN / WHEN / THEN
    assert explain("interaction_required:50076") == explain("interaction_required")
    unknown = explain("graph_418")
    assert unknown is not None
    assert "graph_418" in unknown.summary
    assert explain(None) is None


def test_consent_whose_folder_lookup_fails_still_syncs_the_default_folders(
    tenant: Tenant,
) -> None:
    """A consent whose Sent Items lookup Graph refuses still ends with Inbox synced."""
    # GIVEN customer mail in the inbox, and Graph answering 503 to every try of Sent Items
    upn = tenant.add_user("hal")
    tenant.add_company("Acme", ["acme.example"])
    tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "hello")])
    busy = {"error": {"code": "ServiceUnavailable", "message": "try later"}}
    fault = FaultRule(r"/mailFolders/sentitems$", 503, service="graph", count=4, body=busy)
    tenant.stack.sim.add_fault(fault)

    # WHEN the user consents, Graph recovers, and a round runs
    callback = tenant.stack.connect_mail(tenant.token(upn))
    tenant.stack.sim.clear_faults()
    tenant.sync()

    # THEN consent succeeded, the round chose Inbox and Sent Items and stored the message
    assert callback.status_code < 400, callback.text
    [item] = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert item["state"] == "active"
    assert sorted(f["name"] for f in item["folders"]) == ["Inbox", "Sent Items"]
    assert len(tenant.company_emails("Acme")) == 1
