"""The audit log through the local host: settings changes, refusals, consents, listing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.functional.conftest import Tenant
from tests.functional.test_outbox_api import connected, send

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


def test_refused_calls_naming_text_in_place_of_an_id_keep_no_address(tenant: Tenant) -> None:
    """A path that names an address where an id belongs is audited as "(not an id)"."""
    # GIVEN an admin who names a user by address and a user who deletes "an email" by address
    upn = tenant.add_user("ann")
    bob = f"bob@{tenant.domain}"

    # WHEN both calls are refused
    revoke = tenant.stack.call("POST", f"admin/users/{bob}/connections/mail/revoke", tenant.admin)
    delete = tenant.stack.call("DELETE", "emails/cfo@acme.example", tenant.token(upn))

    # THEN each left a refused entry whose target is not the text given
    assert revoke.status_code >= 400
    assert delete.status_code >= 400
    entries = _entries(tenant)
    refused = {e["action"]: e for e in entries if e["outcome"] == "refused"}
    assert refused["connection.revoke"]["targetUserId"] == "(not an id)"
    assert refused["email.delete"]["targetId"] == "(not an id)"
    assert "@" not in str(entries)


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


def _oid(token: str) -> str:
    """The user id a bearer token names."""
    return str(jwt.decode(token, options={"verify_signature": False})["oid"])


def _summary(entries: list[dict[str, Any]], *actions: str) -> list[tuple[Any, ...]]:
    """Who did which of these actions to whom and what, and how it ended, newest first."""
    keys = ("actorId", "action", "targetUserId", "targetId", "outcome", "reason")
    return [tuple(e[k] for k in keys) for e in entries if e["action"] in actions]


def test_rule_switch_and_group_changes_are_audited_without_their_content(tenant: Tenant) -> None:
    """Tenant rules, switches, groups and a user's own rules each leave an entry, no content."""
    # GIVEN an admin, a user, and rules and a group full of addresses and phrases
    admin, upn = _oid(tenant.admin), tenant.add_user("ann")
    ann, call = tenant.users[upn], tenant.stack.call
    people = {"type": "participant", "role": "any", "addresses": ["ceo@secret.example"]}
    words = {"type": "content", "field": "subject", "phrase": "confidential merger"}
    group = {"addresses": ["board@secret.example"], "description": "Secret board"}

    # WHEN the admin saves a group, adds, replaces and deletes a tenant rule, sets the switches
    # and deletes the group; the user is refused the switches, then adds, replaces and deletes
    # a rule of their own
    call("PUT", "admin/rules/groups/vip", tenant.admin, json=group).raise_for_status()
    first = {"name": "Secret", "conditions": [people]}
    rule = call("POST", "admin/rules", tenant.admin, json=first)
    tenant_rule = rule.json()["id"]
    replaced = {"name": "Secret too", "conditions": [words]}
    call("PUT", f"admin/rules/{tenant_rule}", tenant.admin, json=replaced).raise_for_status()
    switches = {"bulkMail": True}
    call("PUT", "admin/rules/switches", tenant.admin, json=switches).raise_for_status()
    call("DELETE", f"admin/rules/{tenant_rule}", tenant.admin).raise_for_status()
    call("DELETE", "admin/rules/groups/vip", tenant.admin).raise_for_status()
    refused = call("PUT", "admin/rules/switches", tenant.token(upn), json=switches)
    own = call("POST", "me/rules", tenant.token(upn), json={"name": "Mine", "conditions": [words]})
    own_rule = own.json()["id"]
    call("PUT", f"me/rules/{own_rule}", tenant.token(upn), json=replaced).raise_for_status()
    call("DELETE", f"me/rules/{own_rule}", tenant.token(upn)).raise_for_status()

    # THEN each change left one entry naming who, what and the outcome, newest first, and no
    # entry holds an address, a phrase, a rule or group name
    assert refused.status_code == 403
    entries = _entries(tenant)
    assert _summary(
        entries,
        "tenantRule.create",
        "tenantRule.set",
        "tenantRule.delete",
        "userRule.set",
        "userRule.delete",
        "switches.set",
        "group.set",
        "group.delete",
    ) == [
        (ann, "userRule.delete", ann, own_rule, "succeeded", None),
        (ann, "userRule.set", ann, own_rule, "succeeded", None),
        (ann, "switches.set", None, None, "refused", "forbidden"),
        (admin, "group.delete", None, "vip", "succeeded", None),
        (admin, "tenantRule.delete", None, tenant_rule, "succeeded", None),
        (admin, "switches.set", None, None, "succeeded", None),
        (admin, "tenantRule.set", None, tenant_rule, "succeeded", None),
        (admin, "tenantRule.create", None, tenant_rule, "succeeded", None),
        (admin, "group.set", None, "vip", "succeeded", None),
    ]
    text = str(entries)
    for word in ("secret", "Secret", "merger", "board@", "ceo@", "Mine", upn):
        assert word not in text


def test_company_user_and_folder_changes_are_audited_with_their_target(tenant: Tenant) -> None:
    """Putting a company or user and choosing folders leave entries naming the target, no names."""
    # GIVEN an admin and a connected user
    admin, upn = _oid(tenant.admin), tenant.add_user("bo")
    bo, call = tenant.users[upn], tenant.stack.call
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    company = str(uuid.uuid4())
    body = {"name": "Secret Holdings", "domains": ["secret.example"]}

    # WHEN the admin puts a company under a new id and again, the user tries to put it and to
    # give a colleague roles, then chooses two folders to sync and then one that does not exist
    call("PUT", f"admin/companies/{company}", tenant.admin, json=body).raise_for_status()
    renamed = {**body, "name": "Secret Holdings Two"}
    call("PUT", f"admin/companies/{company}", tenant.admin, json=renamed).raise_for_status()
    refused_company = call("PUT", f"admin/companies/{company}", tenant.token(upn), json=body)
    colleague = str(uuid.uuid4())
    roles = {"upn": f"cal@{tenant.domain}", "displayName": "Cal", "roles": ["Admin"]}
    refused_user = call("PUT", f"admin/users/{colleague}", tenant.token(upn), json=roles)
    folders = [tenant.stack.sim.folder_id(upn, name) for name in ("inbox", "archive")]
    chosen = {"folderIds": folders}
    call("PUT", "me/connections/mail/folders", tenant.token(upn), json=chosen).raise_for_status()
    unknown = {"folderIds": ["not-a-folder"]}
    refused_folders = call("PUT", "me/connections/mail/folders", tenant.token(upn), json=unknown)

    # THEN each call left its entry naming its target, refused ones too, the folder choice with
    # how many folders it holds, and no entry names the company, its domain or a folder
    statuses = (refused_company, refused_user, refused_folders)
    assert [answer.status_code for answer in statuses] == [403, 403, 400]
    entries = _entries(tenant)
    assert _summary(entries, "company.set", "folders.set") == [
        (bo, "folders.set", bo, None, "refused", "invalid_input"),
        (bo, "folders.set", bo, None, "succeeded", None),
        (bo, "company.set", None, company, "refused", "forbidden"),
        (admin, "company.set", None, company, "succeeded", None),
        (admin, "company.set", None, company, "succeeded", None),
    ]
    refused_roles = (bo, "user.set", colleague, None, "refused", "forbidden")
    assert _summary(entries, "user.set")[0] == refused_roles
    assert [e["counts"] for e in entries if e["action"] == "folders.set"] == [{}, {"folders": 2}]
    text = str(entries)
    for word in ("Secret", "secret.example", "Archive", "Inbox", *folders, upn, "cal@"):
        assert word not in text


def test_sending_and_cancelling_are_audited_without_their_content(tenant: Tenant) -> None:
    """Posting and cancelling outbox emails leave entries naming the item, never its content."""
    # GIVEN do-not-disturb hours covering now, so an automatic email waits, and a connected user
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "timeZone": "sender",
    }
    body = {"name": "Test tenant", "ownDomains": [tenant.domain], "doNotDisturb": quiet}
    tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body).raise_for_status()
    upn = connected(tenant, "cy")
    cy = tenant.users[upn]
    tenant.stack.sim.set_mailbox_time_zone(upn, "UTC")
    content = {"subject": "Secret offer", "html": "<p>Confidential price</p>"}

    # WHEN the user posts a manual and an automatic email and one without recipients, cancels
    # the automatic one, and tries to cancel the manual one
    manual = send(tenant, upn, **content).json()["id"]
    automatic = send(tenant, upn, kind="automatic", sequenceId="s-1", **content).json()["id"]
    bad = send(tenant, upn, to=[], **content)
    cancelled = tenant.stack.call("DELETE", f"me/outbox/{automatic}", tenant.token(upn))
    kept = tenant.stack.call("DELETE", f"me/outbox/{manual}", tenant.token(upn))

    # THEN each call left its entry naming the item and how it ended, with no subject, body or
    # address in any entry
    assert (bad.status_code, cancelled.status_code, kept.status_code) == (400, 200, 409)
    entries = _entries(tenant)
    assert _summary(entries, "email.send", "email.sendCancel") == [
        (cy, "email.sendCancel", None, manual, "refused", "conflict"),
        (cy, "email.sendCancel", None, automatic, "succeeded", None),
        (cy, "email.send", None, None, "refused", "invalid_input"),
        (cy, "email.send", None, automatic, "accepted", None),
        (cy, "email.send", None, manual, "accepted", None),
    ]
    text = str(entries)
    for word in ("Secret", "Confidential", "jane@", "acme.example", "<p>", upn):
        assert word not in text


def test_audit_pages_are_newest_first_disjoint_and_complete(tenant: Tenant) -> None:
    """Paging the log three at a time gives every entry once, newest first, as one long page."""
    # GIVEN seven group changes after the tenant's set-up
    for number in range(7):
        body = {"addresses": [f"p{number}@acme.example"]}
        path = f"admin/rules/groups/g{number}"
        tenant.stack.call("PUT", path, tenant.admin, json=body).raise_for_status()

    # WHEN the admin pages through the log three at a time, and reads it in one page
    pages: list[list[dict[str, Any]]] = []
    token = None
    while len(pages) < 10:
        query = {"pageSize": 3, **({"continuationToken": token} if token else {})}
        page = tenant.stack.call("GET", "admin/audit", tenant.admin, params=query).json()
        pages.append(page["items"])
        token = page["continuationToken"]
        if not token:
            break
    whole = tenant.stack.call("GET", "admin/audit", tenant.admin, params={"pageSize": 50}).json()

    # THEN the pages hold 3, 3 and 2 entries, none twice, together exactly the whole log in
    # its order, the latest change first
    assert [len(page) for page in pages] == [3, 3, 2]
    paged = [entry["id"] for page in pages for entry in page]
    assert len(set(paged)) == len(paged)
    assert paged == [entry["id"] for entry in whole["items"]]
    assert whole["continuationToken"] is None
    assert [entry["targetId"] for entry in whole["items"]] == [
        *(f"g{number}" for number in reversed(range(7))),
        tenant.tenant_id,
    ]
    stamps = [entry["at"] for entry in whole["items"]]
    assert stamps == sorted(stamps, reverse=True)
