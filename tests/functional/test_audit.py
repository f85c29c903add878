"""The audit log through the local host: settings changes, refusals, consents, listing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def _entries(tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    """Every audit entry the admin can list with these filters, page by page."""
    found: list[dict[str, Any]] = []
    token = None
    while True:
        query = {"pageSize": 3, **params, **({"continuationToken": token} if token else {})}
        page = tenant.stack.call("GET", "admin/audit", tenant.admin, params=query)
        assert page.status_code == 200, page.text
        found.extend(page.json()["items"])
        token = page.json()["continuationToken"]
        if not token:
            return found


def test_settings_changes_refusals_and_consents_are_audited_newest_first(tenant: Tenant) -> None:
    """Each settings change, a refused attempt and a consent leave one entry, newest first."""
    # GIVEN a tenant whose admin registers a user and adds a company
    upn = tenant.add_user("ada")
    ada = tenant.users[upn]
    company = tenant.add_company("Acme", ["acme.example"], ["jane@acme.example"])
    policy = {"roles": {"Member": {"portfolio": "owned"}}}
    tenant.stack.call("PUT", "admin/permissions", tenant.admin, json=policy).raise_for_status()

    # WHEN the user tries to delete the company, then connects their mailbox
    refused = tenant.stack.call("DELETE", f"admin/companies/{company}", tenant.token(upn))
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()

    # THEN the log lists every step with its outcome, the latest first
    assert refused.status_code == 403
    entries = _entries(tenant)
    summary = [(e["action"], e["outcome"], e["reason"]) for e in entries]
    assert summary == [
        ("consent.granted", "succeeded", None),
        ("company.delete", "refused", "forbidden"),
        ("permissions.set", "succeeded", None),
        ("company.create", "succeeded", None),
        ("user.set", "succeeded", None),
        ("tenant.set", "succeeded", None),
    ]
    assert entries[0]["actorId"] == entries[0]["targetUserId"] == ada
    assert entries[0]["targetId"] == "mail"
    assert entries[1]["actorId"] == ada
    assert entries[1]["targetId"] == company
    assert entries[3]["targetId"] == company
    assert entries[4]["targetUserId"] == ada
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)


def test_audit_filters_by_user_and_action(tenant: Tenant) -> None:
    """Filtering by user finds what they did and what was done to them; by action, that only."""
    # GIVEN two users, one of whom adds a rule of their own
    ann, ben = tenant.add_user("ann"), tenant.add_user("ben")
    rule = {"name": "r", "conditions": [{"type": "content", "field": "subject", "phrase": "x"}]}
    tenant.stack.call("POST", "me/rules", tenant.token(ann), json=rule).raise_for_status()

    # WHEN the admin filters by each user and by one action
    by_ann = _entries(tenant, userId=tenant.users[ann])
    by_ben = _entries(tenant, userId=tenant.users[ben].upper())
    rules = _entries(tenant, action="userRule.create")

    # THEN each filter holds exactly the matching entries
    assert [e["action"] for e in by_ann] == ["userRule.create", "user.set"]
    assert [e["action"] for e in by_ben] == ["user.set"]
    assert [e["actorId"] for e in rules] == [tenant.users[ann]]


def test_audit_holds_no_names_addresses_or_content(tenant: Tenant) -> None:
    """Entries carry ids and counts only: no company names, domains, addresses or rule text."""
    # GIVEN settings changes full of names and addresses
    tenant.add_user("secretive")
    tenant.add_company("Very Secret Co", ["secret.example"], ["ceo@secret.example"])
    csv = "name,domains\nHidden Ltd,hidden.example\n"
    headers = {"Content-Type": "text/csv"}
    tenant.stack.call(
        "POST", "admin/companies/import", tenant.admin, data=csv, headers=headers
    ).raise_for_status()

    # WHEN the admin lists the log
    text = str(_entries(tenant))

    # THEN none of those words appear, and the import's counts do
    for word in ("Secret", "secret.example", "ceo@", "Hidden", "secretive"):
        assert word not in text
    imports = _entries(tenant, action="companies.import")
    assert imports[0]["counts"] == {"created": 1, "updated": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"action": "drop.tables"}, "action"), ({"userId": "' or 1 eq 1"}, "userId")],
)
def test_audit_listing_refuses_unknown_filters(
    tenant: Tenant, params: dict[str, str], field: str
) -> None:
    """An unknown action or a user id that is no GUID answers 400 naming the parameter."""
    answer = tenant.stack.call("GET", "admin/audit", tenant.admin, params=params)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == field


def test_audit_is_for_admins_only(tenant: Tenant) -> None:
    """A plain user cannot read the audit log."""
    upn = tenant.add_user("eve")
    answer = tenant.stack.call("GET", "admin/audit", tenant.token(upn))
    assert answer.status_code == 403
