"""Bad input to the main job's endpoints, through the local host: a 4xx naming the field.

Each test also reads back what the refused request could have changed, so "nothing half
written" is checked, not assumed.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack

JSON = {"Content-Type": "application/json"}
TENANT_SETTINGS = {
    "name": "Test tenant",
    "backfillDays": 360,
    "sendSizeLimitBytes": 2 * 1024 * 1024,
    "dailyAutomaticLimit": 200,
    "doNotDisturb": None,
}


def _error(answer: Any, status: int) -> dict[str, Any]:
    """The JSON error of an answer, after checking its status and media type."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    error = answer.json()["error"]
    assert isinstance(error, dict)
    return error


def _tenant_settings(tenant: Tenant) -> dict[str, Any]:
    answer = tenant.stack.call("GET", "admin/tenant", tenant.admin)
    answer.raise_for_status()
    return dict(answer.json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"ownDomains": ["a.example"]}', "name"),
        ('{"name": "T"}', "ownDomains"),
        ('{"name": 7, "ownDomains": ["a.example"]}', "name"),
        ('{"name": "T", "ownDomains": "a.example"}', "ownDomains"),
        ('{"name": "T", "ownDomains": [42]}', "ownDomains[0]"),
        ('{"name": "T", "ownDomains": ["not a domain"]}', "ownDomains[0]"),
        ('{"name": "T", "ownDomains": ["a.example"], "backfillDays": "30"}', "backfillDays"),
        ('{"name": "T", "ownDomains": ["a.example"], "backfillDays": 1.5}', "backfillDays"),
        ('{"name": "T", "ownDomains": ["a.example"], "backfillDays": true}', "backfillDays"),
        ('{"name": "T", "ownDomains": ["a.example"], "backfillDays": -1}', "backfillDays"),
        ('{"name": "T", "ownDomains": ["a.example"], "backfillDays": 36501}', "backfillDays"),
        ('{"name": "T", "ownDomains": ["a.example"], "backfil": 30}', "backfil"),
        (
            '{"name": "T", "ownDomains": ["a.example"], "sendSizeLimitBytes": 8388609}',
            "sendSizeLimitBytes",
        ),
        (
            '{"name": "T", "ownDomains": ["a.example"], "dailyAutomaticLimit": 0}',
            "dailyAutomaticLimit",
        ),
        (
            '{"name": "T", "ownDomains": ["a.example"], "doNotDisturb": {"start": "9pm"}}',
            "doNotDisturb.start",
        ),
        ('{"name": "T", "ownDomains": ["a.example"]', "body"),
        ("not json", "body"),
        ('["a.example"]', "body"),
        ("", "body"),
    ],
)
def test_tenant_put_refuses_bad_settings_and_keeps_the_old(
    tenant: Tenant, body: str, field: str
) -> None:
    """A tenant document with a missing, wrong-typed or unknown field, or not JSON, is refused."""
    # GIVEN a tenant set up with its own domain and the default backfill
    before = _tenant_settings(tenant)

    # WHEN the admin replaces its settings with the bad document
    answer = tenant.stack.call("PUT", "admin/tenant", tenant.admin, data=body, headers=JSON)

    # THEN it answers 400 naming the field, and the settings are as they were
    assert _error(answer, 400)["field"] == field
    assert _tenant_settings(tenant) == before
    assert before == {**TENANT_SETTINGS, "id": tenant.tenant_id, "ownDomains": [tenant.domain]}


def _consent_state(tenant: Tenant, upn: str) -> str:
    """Start mail consent for a user and return the state its authorize URL carries."""
    started = tenant.stack.call("POST", "me/connections/mail", tenant.token(upn))
    started.raise_for_status()
    query = parse_qs(urlsplit(started.json()["authorizeUrl"]).query)
    return str(query["state"][0])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"code": "an-auth-code", "state": "<state>"}, "code"),
        ({"code": "an-auth-code", "state": ""}, "state"),
        ({"code": "an-auth-code"}, "state"),
        ({"state": "<state>"}, "code"),
        ({}, "state"),
        ({"code": "an-auth-code", "state": "garbage/#?\\'"}, "state"),
        ({"code": "an-auth-code", "state": "x" * 5000}, "state"),
        ({"code": "", "state": "<state>"}, "code"),
    ],
)
def test_consent_callback_refuses_missing_and_garbage_parameters(
    tenant: Tenant, params: dict[str, str], field: str
) -> None:
    """A callback without code or state, or with a state we never issued, connects nobody."""
    # GIVEN a user who started consent (so a real state exists)
    upn = tenant.add_user("cal")
    state = _consent_state(tenant, upn)
    query = {key: state if value == "<state>" else value for key, value in params.items()}

    # WHEN Microsoft's redirect arrives with the parameters
    answer = tenant.stack.call("GET", "consent/callback", params=query)

    # THEN it answers 400 naming the parameter, and the user has no connection
    error = _error(answer, 400)
    assert error.get("field") == field
    assert error["code"] == "consent_failed"
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert listed == []


def test_consent_callback_with_an_error_instead_of_a_code_connects_nobody(tenant: Tenant) -> None:
    """Microsoft's error redirect (no code) answers 400 with the reason; nothing is connected."""
    # GIVEN a user who started consent
    upn = tenant.add_user("cam")
    state = _consent_state(tenant, upn)

    # WHEN the redirect carries an error and no code
    query = {"state": state, "error": "server_error", "error_description": "try later"}
    answer = tenant.stack.call("GET", "consent/callback", params=query)

    # THEN it answers 400 with Microsoft's reason as the error parameter, and no connection
    error = _error(answer, 400)
    assert (error["reason"], error["field"]) == ("server_error", "error")
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert listed == []


@pytest.mark.parametrize(
    "email_id",
    [
        "unknown",
        "AAMkAGI2TG93AAA=",
        "a" * 600,
        "%2E%2E",
        "x%00y",
        "%ED%A0%80",
        "e-" + "0" * 40,
    ],
)
def test_email_detail_of_an_unknown_or_malformed_id_is_404(tenant: Tenant, email_id: str) -> None:
    """An email id that names nothing, or could not be one, answers 404 in JSON."""
    # GIVEN a registered user of a tenant
    upn = tenant.add_user("dee")

    # WHEN they read the email by the id
    answer = tenant.stack.call("GET", f"emails/{email_id}", tenant.token(upn))

    # THEN it answers 404 with a JSON error
    assert _error(answer, 404)["code"] == "not_found"


def _companies(tenant: Tenant) -> list[dict[str, Any]]:
    answer = tenant.stack.call("GET", "admin/companies", tenant.admin)
    answer.raise_for_status()
    return list(answer.json()["items"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"domains": ["acme.example"]}', "name"),
        ('{"name": "Acme", "domains": "acme.example"}', "domains"),
        ('{"name": "Acme", "domains": ["not a domain"]}', "domains[0]"),
        ('{"name": "Acme", "domains": ["acme.example", "https://acme.example/"]}', "domains[1]"),
        ('{"name": "Acme", "domains": ["acme.example"], "contacts": ["nobody"]}', "contacts[0]"),
        ('{"name": "Acme", "domain": ["acme.example"]}', "domain"),
        ('{"name": "Acme", "domains": ["acme.example"]', "body"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_company_write_refuses_bad_documents_and_writes_nothing(
    tenant: Tenant, method: str, body: str, field: str
) -> None:
    """A company with a missing name, a related domain that is not one, or bad JSON is refused."""
    # GIVEN a tenant with no companies
    path = "admin/companies" if method == "POST" else f"admin/companies/{uuid.uuid4()}"

    # WHEN the admin creates or puts the bad document
    answer = tenant.stack.call(method, path, tenant.admin, data=body, headers=JSON)

    # THEN it answers 400 naming the field, and there are still no companies
    assert _error(answer, 400)["field"] == field
    assert _companies(tenant) == []


@pytest.mark.parametrize("company_id", ["acme", "1234", "0" * 36, f"{uuid.uuid4()}x", "%20"])
def test_company_put_refuses_a_non_guid_id_and_writes_nothing(
    tenant: Tenant, company_id: str
) -> None:
    """A company PUT under an id that is not a GUID answers 400 naming the id; nothing is stored."""
    # GIVEN a tenant with one company
    tenant.add_company("Acme", ["acme.example"])
    before = _companies(tenant)

    # WHEN the admin puts a valid company under the bad id
    body = {"name": "Globex", "domains": ["globex.example"], "contacts": ["a@globex.example"]}
    answer = tenant.stack.call("PUT", f"admin/companies/{company_id}", tenant.admin, json=body)

    # THEN it answers 400 naming the id, and the companies are as they were
    assert _error(answer, 400)["field"] == "company_id"
    assert _companies(tenant) == before


@pytest.mark.parametrize("company_id", [str(uuid.uuid4()), "acme", "%20"])
def test_company_delete_of_an_unknown_id_is_404_and_deletes_nothing(
    tenant: Tenant, company_id: str
) -> None:
    """Deleting a company that does not exist answers 404 and leaves the others alone."""
    # GIVEN a tenant with one company
    tenant.add_company("Acme", ["acme.example"])
    before = _companies(tenant)

    # WHEN the admin deletes an id that names no company
    answer = tenant.stack.call("DELETE", f"admin/companies/{company_id}", tenant.admin)

    # THEN it answers 404 in JSON, and the company is still there
    assert _error(answer, 404)["code"] == "not_found"
    assert _companies(tenant) == before


def _users(tenant: Tenant) -> list[dict[str, Any]]:
    answer = tenant.stack.call("GET", "admin/users", tenant.admin)
    answer.raise_for_status()
    return list(answer.json()["items"])


@pytest.mark.parametrize("oid", ["bob", "1234", f"{uuid.uuid4()}0", "{" + str(uuid.uuid4()) + "}"])
def test_user_put_refuses_a_non_guid_oid_and_writes_nothing(tenant: Tenant, oid: str) -> None:
    """A user PUT under an object id that is not a GUID answers 400 naming it; nobody is added."""
    # GIVEN a tenant with one registered user
    tenant.add_user("eli")
    before = _users(tenant)

    # WHEN the admin registers a valid profile under the bad oid
    body = {"upn": f"bob@{tenant.domain}", "roles": ["Member"]}
    answer = tenant.stack.call("PUT", f"admin/users/{oid}", tenant.admin, json=body)

    # THEN it answers 400 naming the oid, and the users are as they were
    assert _error(answer, 400)["field"] == "user_id"
    assert _users(tenant) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"folderIds": "inbox"}', "folderIds"),
        ('{"folderIds": {"id": "inbox"}}', "folderIds"),
        ('{"folderIds": 3}', "folderIds"),
        ('{"folderIds": null}', "folderIds"),
        ('{"folderIds": []}', "folderIds"),
        ("{}", "folderIds"),
        ('{"folderIds": [7]}', "folderIds[0]"),
        ('{"folderIds": ["<inbox>", "no-such-folder"]}', "folderIds[1]"),
        ('["<inbox>"]', "body"),
        ('{"folderIds": ["<inbox>"]', "body"),
    ],
)
def test_folder_choice_refuses_a_non_list_and_keeps_the_folders(
    tenant: Tenant, body: str, field: str
) -> None:
    """A folder choice that is not a list of the mailbox's folder ids is refused by name."""
    # GIVEN a connected user syncing the default folders
    upn = tenant.add_user("fin")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    before = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    inbox = next(f["id"] for f in before[0]["folders"] if f["name"] == "Inbox")

    # WHEN they choose folders with the bad document
    document = body.replace("<inbox>", inbox)
    answer = tenant.stack.call(
        "PUT", "me/connections/mail/folders", tenant.token(upn), data=document, headers=JSON
    )

    # THEN it answers 400 naming the field, and the connection syncs the same folders
    assert _error(answer, 400)["field"] == field
    after = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert [c["folders"] for c in after] == [c["folders"] for c in before]
    assert {f["name"] for f in after[0]["folders"]} == {"Inbox", "Sent Items"}
