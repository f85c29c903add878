"""The user's own connections (``GET /api/me/connections``): state, last round, explained error."""

from __future__ import annotations

import pytest

from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import connected, long_token

pytestmark = pytest.mark.stack

VIEW_FIELDS = {
    "kind",
    "state",
    "folders",
    "lastSyncAt",
    "lastRound",
    "kept",
    "dropped",
    "lastError",
    "lastErrorAt",
    "explanation",
}


def my_connections(tenant: Tenant, token: str) -> dict[str, dict[str, object]]:
    """The caller's connections as the API shows them, by kind."""
    response = tenant.stack.call("GET", "me/connections", token)
    assert response.status_code == 200, response.text
    return {item["kind"]: item for item in response.json()["items"]}


def test_my_connections_show_state_last_sync_and_the_rounds_counts(tenant: Tenant) -> None:
    """After a round the user sees active, when it synced, and what the round kept and dropped."""
    # GIVEN a user with one customer mail and two internal ones, synced once
    upn = connected(tenant, "ada", "Acme", "acme.example")
    mail = [message("a@acme.example", [upn], "Order")]
    mail += [message(f"boss@{tenant.domain}", [upn], f"Lunch {i}") for i in range(2)]
    tenant.stack.sim.load_messages(upn, "inbox", mail)
    tenant.sync()

    # WHEN the user lists their own connections
    item = my_connections(tenant, tenant.token(upn))["mail"]

    # THEN the view has the admin view's fields, minus who it is, with this round's counts
    assert set(item) == VIEW_FIELDS
    assert (item["state"], item["kept"], item["dropped"]) == ("active", 1, 2)
    assert item["lastSyncAt"]
    assert (item["lastError"], item["lastErrorAt"], item["explanation"]) == (None, None, None)


def test_my_connections_explain_a_refused_grant_in_plain_words(tenant: Tenant) -> None:
    """A grant revoked by a password reset shows reauth_required, when, and what to do."""
    # GIVEN a synced user whose refresh token Microsoft refuses after a password reset
    upn = connected(tenant, "bea", "Acme", "acme.example")
    tenant.stack.sim.load_messages(upn, "inbox", [message("a@acme.example", [upn], "Quote")])
    tenant.sync()
    api = long_token(tenant, upn)
    synced_at = my_connections(tenant, api)["mail"]["lastSyncAt"]
    tenant.stack.sim.revoke_refresh_tokens(upn, error_code=50173)
    tenant.stack.sim.advance_time(2 * 3600)

    # WHEN a round runs and the user lists their connections
    tenant.sync()
    item = my_connections(tenant, api)["mail"]

    # THEN the state, the code with its time and a plain explanation are shown; the last
    # successful sync and its counts stay those of the round before
    assert (item["state"], item["lastError"]) == ("reauth_required", "invalid_grant:50173")
    assert item["lastErrorAt"]
    assert (item["lastSyncAt"], item["kept"]) == (synced_at, 1)
    explanation = item["explanation"]
    assert isinstance(explanation, dict)
    assert explanation["code"] == "invalid_grant:50173"
    assert "password reset" in explanation["summary"]
    assert "Connect your mailbox again" in explanation["action"]


def test_my_connections_list_each_kind_with_its_own_state(tenant: Tenant) -> None:
    """Mail and calendar connections are listed apart; only the caller's own are shown."""
    # GIVEN a user with mail and calendar connected, and a colleague with mail
    upn = connected(tenant, "cai", "Acme", "acme.example")
    tenant.stack.connect_calendar(tenant.token(upn)).raise_for_status()
    connected(tenant, "dov", "Acme", "acme.example")

    # WHEN the user lists their connections before any round
    items = my_connections(tenant, tenant.token(upn))

    # THEN both of theirs are active, never synced, with nothing to explain
    assert sorted(items) == ["calendar", "mail"]
    for item in items.values():
        assert (item["state"], item["lastSyncAt"], item["explanation"]) == ("active", None, None)
        assert (item["kept"], item["dropped"]) == (None, None)
