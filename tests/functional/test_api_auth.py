"""Bearer-token authentication of the API, and the tenant taken only from the token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from devstack.stack import API_AUDIENCE, LocalStack
from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _claims(stack: LocalStack, tenant_id: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": f"{stack.sim.authority_host}/{tenant_id}/v2.0",
        "aud": API_AUDIENCE,
        "tid": tenant_id,
        "oid": str(uuid.uuid4()),
        "roles": ["Admin"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }


def test_auth_refuses_expired_not_yet_valid_and_foreign_audience_tokens(tenant: Tenant) -> None:
    """Tokens signed by the authority but expired, not yet valid or for another API get 401."""
    # GIVEN tokens the authority signed with one claim wrong each
    stack, tid = tenant.stack, tenant.tenant_id
    oid = str(uuid.uuid4())
    tokens = [
        stack.sim.issue_api_token(tid, oid, roles=("Admin",), expires_in=-600),
        stack.sim.issue_api_token(tid, oid, roles=("Admin",), not_before=time.time() + 3600),
        stack.sim.issue_api_token(tid, oid, roles=("Admin",), audience="api://someone-else"),
    ]

    # WHEN each reads the tenant's settings
    answers = [stack.call("GET", "admin/tenant", token) for token in tokens]

    # THEN all are refused as unauthenticated
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all(a.json()["error"]["code"] == "unauthenticated" for a in answers)


def test_auth_refuses_unsigned_and_hmac_tokens(tenant: Tenant) -> None:
    """``alg: none`` and HMAC tokens with otherwise perfect claims are refused."""
    # GIVEN an unsigned token and one signed with HS256 using a guessable secret
    claims = _claims(tenant.stack, tenant.tenant_id)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    hmac = jwt.encode(claims, "a-secret-anyone-could-guess-32bytes!", algorithm="HS256")

    # WHEN they call an admin endpoint
    answers = [tenant.stack.call("GET", "admin/tenant", token) for token in (unsigned, hmac)]

    # THEN both are refused
    assert [a.status_code for a in answers] == [401, 401]


def test_auth_token_with_forged_signature_is_refused(tenant: Tenant) -> None:
    """A real token whose payload was changed (here: the roles) fails the signature check."""
    # GIVEN a member's token with its payload swapped for an admin's
    stack = tenant.stack
    real = stack.sim.issue_api_token(tenant.tenant_id, str(uuid.uuid4()))
    header, _payload, signature = real.split(".")
    forged = f"{header}.{_b64(_claims(stack, tenant.tenant_id))}.{signature}"

    # WHEN the forged token calls an admin endpoint
    answer = stack.call("GET", "admin/tenant", forged)

    # THEN it is refused
    assert answer.status_code == 401


def test_auth_tenant_comes_from_token_not_from_body(tenant: Tenant) -> None:
    """An admin cannot set up another tenant by naming it in the request."""
    # GIVEN an admin of this tenant and some other tenant id
    other = str(uuid.uuid4())
    body = {"name": "Hijack", "ownDomains": ["evil.example"], "tenantId": other, "id": other}

    # WHEN the admin sends the other tenant's id in the body
    answer = tenant.stack.call("PUT", "admin/tenant", tenant.admin, json=body)
    mine = tenant.stack.call("GET", "admin/tenant", tenant.admin)

    # THEN the request is refused or applies to the caller's own tenant only
    assert answer.status_code in (200, 400)
    if answer.status_code == 200:
        assert mine.json()["id"] == tenant.tenant_id
    outsider = tenant.stack.token(other, str(uuid.uuid4()), roles=("Admin",))
    assert tenant.stack.call("GET", "admin/tenant", outsider).status_code == 404


def test_auth_member_cannot_use_admin_endpoints(tenant: Tenant) -> None:
    """A user without the Admin role gets 403 from admin endpoints."""
    # GIVEN a registered member
    upn = tenant.add_user("mo")

    # WHEN they try to create a company
    body = {"name": "Nope", "domains": ["nope.example"]}
    answer = tenant.stack.call("POST", "admin/companies", tenant.token(upn), json=body)

    # THEN it is forbidden
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


def test_consent_start_refuses_unregistered_user(tenant: Tenant) -> None:
    """A user of the tenant whom no admin registered cannot start consent."""
    # GIVEN a valid token for a user the admin never registered
    token = tenant.stack.token(tenant.tenant_id, str(uuid.uuid4()))

    # WHEN they start consent
    answer = tenant.stack.call("POST", "me/connections/mail", token)

    # THEN it is forbidden
    assert answer.status_code == 403


def test_mail_folders_listed_and_chosen(tenant: Tenant) -> None:
    """A connected user lists folders (children included) and chooses which to sync."""
    # GIVEN a connected user with a child folder under Inbox
    upn = tenant.add_user("flo")
    child = tenant.stack.sim.create_folder(upn, "Customers", parent="inbox")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()

    # WHEN they list folders and choose the child folder and Archive
    listed = tenant.stack.call("GET", "me/mailfolders", tenant.token(upn)).json()["items"]
    by_path = {f["path"]: f for f in listed}
    chosen = [child, by_path["Archive"]["id"]]
    answer = tenant.stack.call(
        "PUT", "me/connections/mail/folders", tenant.token(upn), json={"folderIds": chosen}
    )
    relisted = tenant.stack.call("GET", "me/mailfolders", tenant.token(upn)).json()["items"]

    # THEN the child folder is listed with its path, and the choice is stored
    assert by_path["Inbox/Customers"]["id"] == child
    assert by_path["Inbox"]["selected"]
    assert by_path["Sent Items"]["selected"]
    assert answer.status_code == 200
    assert {f["id"] for f in relisted if f["selected"]} == set(chosen)


def test_mail_folders_refuses_unknown_folder(tenant: Tenant) -> None:
    """Choosing a folder id the mailbox does not have answers 400 naming the entry."""
    # GIVEN a connected user
    upn = tenant.add_user("gil")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()

    # WHEN they choose a folder that does not exist
    body = {"folderIds": ["not-a-folder"]}
    answer = tenant.stack.call("PUT", "me/connections/mail/folders", tenant.token(upn), json=body)

    # THEN it is refused naming the entry, and the stored choice is unchanged
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "folderIds[0]"
    listed = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert {f["name"] for f in listed[0]["folders"]} == {"Inbox", "Sent Items"}


def _issuer_key(stack: LocalStack) -> dict[str, Any]:
    """The authority's published signing key (JWK), as anyone can fetch it."""
    keys = requests.get(stack.sim.jwks_url, verify=stack.env["REQUESTS_CA_BUNDLE"], timeout=30)
    keys.raise_for_status()
    return dict(keys.json()["keys"][0])


def _hs256(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """A token whose header names the issuer's key id but which is signed with HMAC-SHA256."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}"
    digest = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"


def test_auth_refuses_hmac_tokens_keyed_with_the_issuers_public_key(tenant: Tenant) -> None:
    """HS256 signed with the issuer's public key (PEM or the JWK's n) and its kid gets 401."""
    # GIVEN the issuer's published key and HS256 tokens keyed with each public form of it
    stack = tenant.stack
    jwk = _issuer_key(stack)
    public = RSAAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(public, RSAPublicKey)
    secrets = [
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(Encoding.PEM, PublicFormat.PKCS1),
        jwk["n"].encode("ascii"),
        base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4)),
    ]
    claims = _claims(stack, tenant.tenant_id)
    forged = [_hs256(claims, jwk["kid"], secret) for secret in secrets]
    genuine = stack.sim.issue_api_token(tenant.tenant_id, claims["oid"], roles=("Admin",))

    # WHEN each calls an admin endpoint, and so does a token the issuer really signed
    answers = [stack.call("GET", "admin/tenant", token) for token in forged]
    accepted = stack.call("GET", "admin/tenant", genuine)

    # THEN every HMAC token is refused as unauthenticated, while the same claims signed by the
    # issuer pass
    assert [a.status_code for a in answers] == [401] * len(secrets)
    assert all(a.json()["error"]["code"] == "unauthenticated" for a in answers)
    assert accepted.status_code == 200, accepted.text
