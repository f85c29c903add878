"""Functional tests of the simulator's identity endpoints, driven with MSAL over real HTTPS."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import msal
import pytest
import requests

from devstack.consentdriver import ConsentError, drive_consent
from devstack.simulator import FaultRule, Simulator
from devstack.tls import create_tls_material

pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")

API_AUDIENCE = "api://outlook-sync-tests"
CALLBACK = "https://app.example.test/auth/callback"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return create_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sim(tls):
    """A fresh simulator per test: the simulated clock and fault rules are simulator-wide."""
    simulator = Simulator(tls, api_audience=API_AUDIENCE)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def ca(tls, monkeypatch):
    """Trust the simulator's CA in this process, as the stack does for the product."""
    path = str(tls.ca_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", path)
    return path


@pytest.fixture
def tenant(sim):
    tenant_id = str(uuid.uuid4())
    user = sim.add_user(tenant_id, f"user-{uuid.uuid4().hex[:8]}@contoso.test", "Test User")
    client_id = str(uuid.uuid4())
    sim.register_app(client_id, "s3cret-value", [CALLBACK])
    return tenant_id, user, client_id


def _msal_app(sim, client_id, ca):
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential="s3cret-value",
        authority=f"{sim.base_url}/organizations",
        instance_discovery=False,
        verify=ca,
    )


def _expire_cached_access_tokens(app):
    kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
    for entry in list(app.token_cache.search(kind)):
        app.token_cache.modify(kind, entry, {"expires_on": str(int(time.time()) - 60)})


def _query(location):
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _pkce():
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _authorize_url(sim, client_id, upn, challenge, **extra):
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "Mail.Read offline_access openid profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": upn,
        **extra,
    }
    return f"{sim.base_url}/organizations/oauth2/v2.0/authorize?{urlencode(params)}"


def _redeem(sim, client_id, code, verifier, ca):
    data = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": "s3cret-value",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "client_info": "1",
    }
    return requests.post(f"{sim.base_url}/organizations/oauth2/v2.0/token", data=data, verify=ca)


def test_auth_code_flow_with_msal_rotates_refresh_token(sim, ca, tenant):
    """MSAL completes auth code + PKCE against the simulator and a forced refresh rotates the RT."""
    # GIVEN a registered app, a user and an MSAL client pointed at the simulator
    tenant_id, user, client_id = tenant
    app = _msal_app(sim, client_id, ca)
    flow = app.initiate_auth_code_flow(
        ["Mail.ReadWrite"], redirect_uri=CALLBACK, login_hint=user.upn
    )

    # WHEN the user accepts consent and the app redeems the code
    location = drive_consent(flow["auth_uri"], verify=ca)
    result = app.acquire_token_by_auth_code_flow(flow, _query(location))

    # THEN MSAL gets tokens for the right user and tenant
    assert "access_token" in result, result.get("error_description")
    assert result["id_token_claims"]["oid"] == user.oid
    assert result["id_token_claims"]["tid"] == tenant_id
    first_rt = result["refresh_token"]
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["scp"] == "Mail.ReadWrite"

    # WHEN the access token has expired, for MSAL's cache and for the simulator's clock
    _expire_cached_access_tokens(app)
    sim.advance_time(3700)
    account = app.get_accounts(username=user.upn)[0]
    refreshed = app.acquire_token_silent_with_error(["Mail.ReadWrite"], account)

    # THEN a new access token and a new refresh token come back; the old RT still works
    assert refreshed is not None
    assert "access_token" in refreshed
    assert refreshed["refresh_token"] != first_rt
    assert refreshed["access_token"] != result["access_token"]
    old = app.acquire_token_by_refresh_token(first_rt, ["Mail.ReadWrite"])
    assert "access_token" in old, old.get("error_description")


def test_token_wrong_pkce_verifier_is_invalid_grant(sim, ca, tenant):
    """A code redeemed with a verifier that does not match its challenge is refused."""
    # GIVEN a code issued for a PKCE challenge
    _, user, client_id = tenant
    _, challenge = _pkce()
    code = _query(drive_consent(_authorize_url(sim, client_id, user.upn, challenge), verify=ca))[
        "code"
    ]

    # WHEN the app redeems it with another verifier
    response = _redeem(sim, client_id, code, secrets.token_urlsafe(32), ca)

    # THEN Entra's invalid_grant error comes back in its JSON shape
    body = response.json()
    assert response.status_code == 400
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [501481]
    assert body["error_description"].startswith("AADSTS501481:")
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()


def test_token_replayed_code_is_invalid_grant(sim, ca, tenant):
    """An authorization code works once; the second redemption is refused."""
    # GIVEN a code that has been redeemed
    _, user, client_id = tenant
    verifier, challenge = _pkce()
    location = drive_consent(_authorize_url(sim, client_id, user.upn, challenge), verify=ca)
    code = _query(location)["code"]
    assert _query(location)["state"] == "st-1"
    assert _redeem(sim, client_id, code, verifier, ca).status_code == 200

    # WHEN it is redeemed again
    response = _redeem(sim, client_id, code, verifier, ca)

    # THEN the simulator answers invalid_grant AADSTS54005
    assert response.status_code == 400
    assert response.json()["error_codes"] == [54005]


def test_token_expired_code_is_invalid_grant(sim, ca, tenant):
    """A code older than ten minutes (simulated clock) is refused."""
    # GIVEN a fresh code
    _, user, client_id = tenant
    verifier, challenge = _pkce()
    location = drive_consent(_authorize_url(sim, client_id, user.upn, challenge), verify=ca)

    # WHEN eleven minutes pass before redemption
    sim.advance_time(660)
    response = _redeem(sim, client_id, _query(location)["code"], verifier, ca)

    # THEN it has expired
    assert response.json()["error_codes"] == [70008]


def test_token_response_carries_client_info_and_id_token(sim, ca, tenant):
    """The code redemption returns client_info, an id_token with the nonce, and the scopes."""
    # GIVEN a code
    tenant_id, user, client_id = tenant
    verifier, challenge = _pkce()
    location = drive_consent(_authorize_url(sim, client_id, user.upn, challenge), verify=ca)

    # WHEN it is redeemed
    body = _redeem(sim, client_id, _query(location)["code"], verifier, ca).json()

    # THEN the response has Entra's fields
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info == {"uid": user.oid, "utid": tenant_id}
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["nonce"] == "n-1"
    assert id_claims["aud"] == client_id
    assert id_claims["iss"] == f"{sim.base_url}/{tenant_id}/v2.0"
    assert id_claims["preferred_username"] == user.upn
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "Mail.Read" in body["scope"].split()


def test_consent_declined_redirects_with_access_denied(sim, ca, tenant):
    """Declining consent sends the browser back with access_denied and AADSTS65004."""
    # GIVEN an authorize request
    _, user, client_id = tenant
    _, challenge = _pkce()

    # WHEN the user declines
    location = drive_consent(
        _authorize_url(sim, client_id, user.upn, challenge), decision="decline", verify=ca
    )

    # THEN the callback gets the error and the state
    query = _query(location)
    assert location.startswith(CALLBACK)
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS65004")
    assert query["state"] == "st-1"


def test_authorize_unknown_user_shows_error_page(sim, ca, tenant):
    """A login_hint naming nobody gets a 400 error page, not a redirect."""
    # GIVEN an authorize URL for an unknown user
    _, _, client_id = tenant
    _, challenge = _pkce()
    url = _authorize_url(sim, client_id, "nobody@contoso.test", challenge)

    # WHEN the browser opens it
    # THEN the consent driver reports the error page
    with pytest.raises(ConsentError, match="HTTP 400"):
        drive_consent(url, verify=ca)


def test_authorize_without_pkce_redirects_with_invalid_request(sim, ca, tenant):
    """An authorize request without an S256 code challenge is sent back with invalid_request."""
    # GIVEN an authorize URL with a plain challenge method
    _, user, client_id = tenant
    url = _authorize_url(sim, client_id, user.upn, "abc", code_challenge_method="plain")

    # WHEN the browser opens it
    response = requests.get(url, allow_redirects=False, verify=ca)

    # THEN it is redirected to the callback with the error
    assert response.status_code == 302
    assert _query(response.headers["Location"])["error"] == "invalid_request"


def test_consent_picks_account_when_no_login_hint(sim, ca, tenant):
    """Without login_hint the consent page asks for the account and the driver supplies it."""
    # GIVEN an authorize URL without login_hint
    _, user, client_id = tenant
    verifier, challenge = _pkce()
    url = _authorize_url(sim, client_id, "", challenge)

    # WHEN the user signs in as themselves
    location = drive_consent(url, user=user.upn, verify=ca)

    # THEN the code is theirs
    body = _redeem(sim, client_id, _query(location)["code"], verifier, ca).json()
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["oid"] == user.oid


def test_discovery_and_jwks_verify_api_token(sim, ca, tenant):
    """An API token verifies with PyJWT against the keys named by the discovery document."""
    # GIVEN the tenant's discovery document and an API token
    tenant_id, user, _ = tenant
    config = requests.get(
        f"{sim.base_url}/{tenant_id}/v2.0/.well-known/openid-configuration", verify=ca
    ).json()
    token = sim.issue_api_token(tenant_id, user.oid, roles=("Mail.Sync",), upn=user.upn)

    # WHEN the token is verified with the published keys
    keys = jwt.PyJWKSet.from_dict(requests.get(config["jwks_uri"], verify=ca).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=API_AUDIENCE, issuer=config["issuer"]
    )

    # THEN the claims are Entra's v2.0 API token claims
    assert config["issuer"] == f"{sim.base_url}/{tenant_id}/v2.0"
    assert config["token_endpoint"].startswith("https://")
    assert claims["tid"] == tenant_id
    assert claims["oid"] == user.oid
    assert claims["roles"] == ["Mail.Sync"]
    assert claims["ver"] == "2.0"


def test_discovery_multi_tenant_uses_template_issuer(sim, ca):
    """The organizations discovery document publishes Entra's {tenantid} issuer template."""
    # GIVEN / WHEN the organizations document is fetched
    url = f"{sim.base_url}/organizations/v2.0/.well-known/openid-configuration"
    config = requests.get(url, verify=ca).json()

    # THEN its issuer is the template and its endpoints stay under organizations
    assert config["issuer"] == f"{sim.base_url}/{{tenantid}}/v2.0"
    assert config["authorization_endpoint"].endswith("/organizations/oauth2/v2.0/authorize")


def test_api_token_over_http_honours_audience_and_expiry(sim, ca, tenant):
    """POST /_sim/api-token returns a token with the requested audience and lifetime."""
    # GIVEN a request for a short-lived token with another audience
    tenant_id, user, _ = tenant
    body = {"tenant_id": tenant_id, "oid": user.oid, "audience": "api://other", "expires_in": 60}

    # WHEN it is requested over HTTP
    token = requests.post(f"{sim.base_url}/_sim/api-token", json=body, verify=ca).json()

    # THEN the claims match
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "api://other"
    assert claims["exp"] - claims["iat"] == 60


def test_client_credentials_issues_token_for_resource(sim, ca, tenant):
    """The app gets an app-only token whose audience is the requested resource."""
    # GIVEN the app's registration
    tenant_id, _, client_id = tenant
    data = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": "s3cret-value",
        "scope": "https://vault.azure.net/.default",
    }

    # WHEN it asks for a token for Key Vault
    response = requests.post(f"{sim.base_url}/{tenant_id}/oauth2/v2.0/token", data=data, verify=ca)

    # THEN the token is for the vault and the tenant
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://vault.azure.net"
    assert claims["tid"] == tenant_id
    assert claims["idtyp"] == "app"


def test_token_wrong_client_secret_is_invalid_client(sim, ca, tenant):
    """A wrong client secret gets 401 invalid_client AADSTS7000215."""
    # GIVEN a wrong secret
    tenant_id, _, client_id = tenant
    data = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": "nope",
        "scope": "https://vault.azure.net/.default",
    }

    # WHEN the app asks for a token
    response = requests.post(f"{sim.base_url}/{tenant_id}/oauth2/v2.0/token", data=data, verify=ca)

    # THEN it is refused
    assert response.status_code == 401
    assert response.json()["error_codes"] == [7000215]


def test_refresh_fault_rule_returns_invalid_grant_for_one_user(sim, ca, tenant):
    """A token-endpoint fault rule for one user makes MSAL's silent refresh fail with its codes."""
    # GIVEN a signed-in user and a fault rule for their refreshes
    _, user, client_id = tenant
    app = _msal_app(sim, client_id, ca)
    flow = app.initiate_auth_code_flow(["Mail.Read"], redirect_uri=CALLBACK, login_hint=user.upn)
    app.acquire_token_by_auth_code_flow(flow, _query(drive_consent(flow["auth_uri"], verify=ca)))
    sim.add_fault(
        FaultRule(
            path=r"/oauth2/v2\.0/token$",
            method="POST",
            user=user.upn,
            status=400,
            body={
                "error": "invalid_grant",
                "error_description": "AADSTS65001: revoked",
                "error_codes": [65001],
            },
        )
    )

    # WHEN MSAL refreshes silently
    account = app.get_accounts(username=user.upn)[0]
    result = app.acquire_token_silent_with_error(["Mail.Read"], account, force_refresh=True)

    # THEN the error comes back, from the fault rule, which is then used up
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [65001]
    token_calls = [r for r in sim.requests_seen() if r.path.endswith("/token")]
    assert [r.status for r in token_calls] == [200, 400]
    assert token_calls[-1].user == user.oid
    refresh_token = next(app.token_cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))
    data = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": "s3cret-value",
        "refresh_token": refresh_token["secret"],
        "scope": "Mail.Read offline_access",
    }
    again = requests.post(f"{sim.base_url}/organizations/oauth2/v2.0/token", data=data, verify=ca)
    assert again.status_code == 200


def test_revoked_refresh_tokens_fail_until_new_consent(sim, ca, tenant):
    """revoke_refresh_tokens makes refreshes fail with the chosen AADSTS code."""
    # GIVEN a user signed in with response_mode=form_post whose grants are then revoked
    _, user, client_id = tenant
    app = _msal_app(sim, client_id, ca)
    flow = app.initiate_auth_code_flow(
        ["Mail.Read"], redirect_uri=CALLBACK, login_hint=user.upn, response_mode="form_post"
    )
    signed_in = app.acquire_token_by_auth_code_flow(
        flow, _query(drive_consent(flow["auth_uri"], verify=ca))
    )
    assert "access_token" in signed_in
    sim.revoke_refresh_tokens(user.upn, error_code=50173)

    # WHEN MSAL refreshes silently
    account = app.get_accounts(username=user.upn)[0]
    result = app.acquire_token_silent_with_error(["Mail.Read"], account, force_refresh=True)

    # THEN the refresh fails with 50173
    assert result["error_codes"] == [50173]
