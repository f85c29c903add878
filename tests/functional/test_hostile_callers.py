"""Hostile callers through the local host: foreign issuers, other tenants' ids, crafted ids.

Every refusal must look the same whether or not the asked-for data exists, so a caller learns
nothing about another tenant, and no id can change the meaning of a Table Storage query.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from devstack.consentdriver import drive_consent
from devstack.simulator import operations
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack

CRAFTED_IDS = [
    "' or PartitionKey ne '",
    "x' or RowKey gt '",
    "00000000-0000-4000-8000-000000000000' or '1' eq '1",
    "a/b\\c#d?e",
    "%27%20or%201%20eq%201",
    "..",
    "x" * 2000,
    "\u202e\u0000ctrl",
]


def _stored_email(tenant: Tenant) -> tuple[str, str]:
    """Connect a user, sync one customer email; return the company id and the email id."""
    upn = tenant.add_user("vic")
    company = tenant.add_company("Acme", ["acme.example"])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.stack.sim.load_messages(upn, "inbox", [message("jane@acme.example", [upn], "hello")])
    tenant.sync()
    emails = tenant.company_emails("Acme")
    assert len(emails) == 1
    return company, str(emails[0]["id"])


def test_token_from_another_issuer_is_refused(tenant: Tenant) -> None:
    """A token signed by the authority but naming another tenant's issuer is refused (401)."""
    # GIVEN a token whose tid is this tenant but whose issuer is another tenant's
    stack = tenant.stack
    foreign = f"{stack.sim.authority_host}/{uuid.uuid4()}/v2.0"
    state = stack.sim.state
    token = operations.issue_api_token(
        state, tenant.tenant_id, str(uuid.uuid4()), roles=("Admin",), issuer=foreign
    )
    impostor = operations.issue_api_token(
        state,
        tenant.tenant_id,
        str(uuid.uuid4()),
        roles=("Admin",),
        issuer="https://evil.example/v2.0",
    )

    # WHEN either reads the tenant's settings
    answers = [stack.call("GET", "admin/tenant", t) for t in (token, impostor)]

    # THEN both are unauthenticated
    assert [a.status_code for a in answers] == [401, 401]


def test_other_tenants_ids_answer_like_unknown_ids(tenant: Tenant) -> None:
    """An admin of another tenant asking for this tenant's company and email gets plain 404s."""
    # GIVEN a stored email of this tenant, and an admin of a second tenant that is set up
    company, email = _stored_email(tenant)
    other_id = str(uuid.uuid4())
    other = tenant.stack.token(other_id, str(uuid.uuid4()), roles=("Admin",))
    body = {"name": "Other", "ownDomains": [f"o{other_id[:8]}.example"]}
    tenant.stack.call("PUT", "admin/tenant", other, json=body).raise_for_status()
    unknown = str(uuid.uuid4())

    # WHEN the outsider asks for the real ids and for ids that exist nowhere
    paths = [
        (f"companies/{company}", f"companies/{unknown}"),
        (f"companies/{company}/emails", f"companies/{unknown}/emails"),
        (f"companies/{company}/events", f"companies/{unknown}/events"),
        (f"emails/{email}", f"emails/{'0' * 64}"),
    ]
    answers = [
        (tenant.stack.call("GET", real, other), tenant.stack.call("GET", fake, other))
        for real, fake in paths
    ]

    # THEN each pair answers alike: 404 with the same error code and no data
    for real, fake in answers:
        assert real.status_code == fake.status_code == 404
        assert real.json()["error"]["code"] == fake.json()["error"]["code"] == "not_found"
    assert tenant.stack.call("GET", "inbox", other).json()["items"] == []


@pytest.mark.parametrize("crafted", CRAFTED_IDS)
def test_crafted_ids_cannot_widen_a_query(tenant: Tenant, crafted: str) -> None:
    """Ids made to break an OData filter or a key are refused or not found, never a leak."""
    # GIVEN a tenant holding one stored email and one rule
    _stored_email(tenant)
    rule = {"name": "r", "conditions": [{"type": "content", "field": "subject", "phrase": "x"}]}
    tenant.stack.call("POST", "admin/rules", tenant.admin, json=rule).raise_for_status()
    segment = quote(crafted, safe="")

    # WHEN the admin uses the crafted value as every kind of id and as a query value
    answers = [
        tenant.stack.call("GET", f"companies/{segment}", tenant.admin),
        tenant.stack.call("GET", f"companies/{segment}/emails", tenant.admin),
        tenant.stack.call("GET", f"emails/{segment}", tenant.admin),
        tenant.stack.call("GET", f"admin/rules/{segment}", tenant.admin),
        tenant.stack.call("GET", "me/rules/explain", tenant.admin, params={"messageId": crafted}),
        tenant.stack.call("GET", "inbox", tenant.admin, params={"continuationToken": crafted}),
        tenant.stack.call("GET", "companies", tenant.admin, params={"continuationToken": crafted}),
    ]

    # THEN each is a 4xx JSON error: nothing is listed, nothing fails inside
    for answer in answers:
        assert 400 <= answer.status_code < 500, (answer.request.url, answer.status_code)
        assert "items" not in answer.json()
        assert answer.json()["error"]["code"] in {"not_found", "invalid_input", "forbidden"}


HUGE_NUMBER = "1" + "0" * 5000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "admin/tenant"),
        ("PUT", "admin/permissions"),
        ("POST", "admin/rules"),
        ("POST", "admin/rules/dryrun"),
        ("POST", "admin/companies"),
        ("PUT", "me/connections/mail/folders"),
    ],
)
def test_numbers_past_the_parser_limit_are_bad_json(tenant: Tenant, method: str, path: str) -> None:
    """A 5,000-digit number is refused as invalid JSON, not a server error."""
    # GIVEN a body whose one number has more digits than Python parses
    body = f'{{"name": "T", "backfillDays": {HUGE_NUMBER}}}'

    # WHEN it is sent / THEN the answer is 400 naming the body
    headers = {"Content-Type": "application/json"}
    answer = tenant.stack.call(method, path, tenant.admin, data=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "body"


def test_rule_limit_holds_when_creations_race(tenant: Tenant) -> None:
    """Creations racing for the last free places never leave a scope over its limit."""
    # GIVEN a user with 96 of their 100 rules
    upn = tenant.add_user("rae")
    token = tenant.token(upn)
    rule = {"name": "r", "conditions": [{"type": "content", "field": "subject", "phrase": "x"}]}
    for _ in range(96):
        tenant.stack.call("POST", "me/rules", token, json=rule).raise_for_status()

    # WHEN ten more are created at once
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(
            pool.map(lambda _: tenant.stack.call("POST", "me/rules", token, json=rule), range(10))
        )

    # THEN the user holds at most 100 rules, and every refusal names the limit
    held = tenant.stack.call("GET", "me/rules", token).json()["items"]
    assert len(held) <= 100
    assert len(held) == 96 + sum(a.status_code == 201 for a in answers)
    for answer in answers:
        assert answer.status_code in {201, 400}
        if answer.status_code == 400:
            assert "at most 100" in answer.json()["error"]["rule"]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"internetMessageHeaders": 5}, "message.internetMessageHeaders"),
        ({"internetMessageHeaders": [{"name": "X"}]}, "message.internetMessageHeaders[0].value"),
        ({"from": "a@b.example"}, "message.from"),
        ({"toRecipients": {"emailAddress": {}}}, "message.toRecipients"),
        (
            {"toRecipients": [{"emailAddress": {"address": 7}}]},
            "message.toRecipients[0].emailAddress.address",
        ),
        ({"subject": ["x"]}, "message.subject"),
        ({"body": {"content": {"x": 1}}}, "message.body.content"),
        ({"isDraft": "no"}, "message.isDraft"),
    ],
)
def test_dry_run_refuses_messages_not_shaped_like_graph(
    tenant: Tenant, message: dict[str, object], field: str
) -> None:
    """A posted message whose fields have other JSON types than Graph's is refused by field."""
    body = {"message": message, "switches": {"internalOnly": False}}
    answer = tenant.stack.call("POST", "admin/rules/dryrun", tenant.admin, json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == field


def test_request_line_too_long_answers_json(tenant: Tenant) -> None:
    """A query string the host's server refuses by itself still answers in the JSON shape."""
    answer = tenant.stack.call(
        "GET", "me/rules/explain", tenant.admin, params={"internetMessageId": "x" * 100_000}
    )
    assert answer.status_code == 414
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "http_414"


def test_callback_without_code_leaves_the_consent_usable(tenant: Tenant) -> None:
    """A cut-off callback (state, no code) is refused without spending the state."""
    # GIVEN a consent the user completed at the identity provider
    upn = tenant.add_user("cal")
    started = tenant.stack.call("POST", "me/connections/mail", tenant.token(upn)).json()
    location = drive_consent(started["authorizeUrl"], verify=str(tenant.stack.tls.ca_pem))
    callback = location.split("/api/", 1)[1]
    state = parse_qs(urlsplit(location).query)["state"][0]

    # WHEN a callback with the state but no code arrives first, then the real one
    cut = tenant.stack.call("GET", "consent/callback", params={"state": state})
    real = tenant.stack.call("GET", callback)

    # THEN the first names the missing code and the second connects the mailbox
    assert cut.status_code == 400
    assert cut.json()["error"]["field"] == "code"
    assert real.status_code == 200, real.text
