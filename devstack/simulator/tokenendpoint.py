"""Entra ID's token endpoint: authorization code (with PKCE), refresh token, client credentials.

Refresh tokens rotate: every redemption returns a new one, and the old one keeps working until it
expires 90 days after issue, as Entra does.

Known limitations: an authorization code is used up by any redemption attempt that names the
right client, even one that then fails; certificate client credentials, on-behalf-of and device
code grants are not supported.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from devstack.simulator import tokens
from devstack.simulator.entra import (
    MULTI_TENANT,
    RESERVED_SCOPES,
    entra_error,
    split_scopes,
    tenant_is_valid,
)
from devstack.simulator.grants import CODE_LIFETIME_S, RefreshGrant
from devstack.simulator.web import json_response

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from devstack.simulator.directory import SimApp, SimUser
    from devstack.simulator.web import Call

ACCESS_TOKEN_LIFETIME_S = 3600


def _client(call: Call) -> tuple[SimApp | None, Response | None]:
    form = call.request.form
    basic = call.request.authorization
    client_id = form.get("client_id") or (basic.username if basic else None) or ""
    secret = form.get("client_secret") or (basic.password if basic else None) or ""
    with call.state.lock:
        app = call.state.directory.find_app(client_id)
    if app is None:
        return None, entra_error(call, 400, "unauthorized_client", 700016)
    if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
        return None, entra_error(call, 401, "invalid_client", 7000215)
    return app, None


def token(call: Call) -> Response:
    """Serve ``POST /{tenant}/oauth2/v2.0/token``."""
    if not tenant_is_valid(call, call.args["tenant"]):
        return entra_error(call, 400, "invalid_request", 90002)
    app, failure = _client(call)
    if app is None:
        return failure or entra_error(call, 400, "invalid_client", 700016)
    grant_type = call.request.form.get("grant_type", "")
    if grant_type == "authorization_code":
        return _redeem_code(call, app)
    if grant_type == "refresh_token":
        return _redeem_refresh(call, app)
    if grant_type == "client_credentials":
        return _client_credentials(call, app)
    return entra_error(call, 400, "unsupported_grant_type", 70003)


def grant_user(call: Call) -> str | None:
    """Return the oid of the user a token request acts for, without using up the grant."""
    form = call.request.form
    with call.state.lock:
        if form.get("grant_type") == "refresh_token":
            grant = call.state.grants.find_refresh(form.get("refresh_token", ""))
            return grant.user_oid if grant else None
        if form.get("grant_type") == "authorization_code":
            code = call.state.grants.find_code(form.get("code", ""))
            return code.user_oid if code else None
    return None


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return bool(verifier) and hmac.compare_digest(expected, challenge)


def _redeem_code(call: Call, app: SimApp) -> Response:
    form = call.request.form
    now = call.state.clock.now()
    with call.state.lock:
        code = call.state.grants.find_code(form.get("code", ""))
        if code is None or code.client_id != app.client_id:
            return entra_error(call, 400, "invalid_grant", 70000, "The code is not valid.")
        already_used, code.redeemed = code.redeemed, True
    if already_used:
        return entra_error(call, 400, "invalid_grant", 54005)
    if now - code.issued > CODE_LIFETIME_S:
        return entra_error(call, 400, "invalid_grant", 70008)
    if form.get("redirect_uri") != code.redirect_uri:
        return entra_error(call, 400, "invalid_grant", 70000, "The redirect_uri does not match.")
    if not _pkce_matches(form.get("code_verifier", ""), code.code_challenge):
        return entra_error(call, 400, "invalid_grant", 501481)
    with call.state.lock:
        user = call.state.directory.get_user(code.user_oid)
    return _user_tokens(call, app, user, code.scopes, code.nonce)


def _refresh_failure(call: Call, app: SimApp, grant: RefreshGrant) -> tuple[str, int] | None:
    with call.state.lock:
        revoked = call.state.grants.revocation(grant.user_oid, app.client_id)
    if grant.client_id != app.client_id:
        return "invalid_grant", 70000
    if call.state.clock.now() >= grant.expires:
        return "invalid_grant", 700082
    return revoked


def _redeem_refresh(call: Call, app: SimApp) -> Response:
    form = call.request.form
    with call.state.lock:
        grant = call.state.grants.find_refresh(form.get("refresh_token", ""))
        user = call.state.directory.find_user(grant.user_oid) if grant else None
    if grant is None or user is None:
        return entra_error(call, 400, "invalid_grant", 9002313)
    failure = _refresh_failure(call, app, grant)
    if failure is not None:
        error, code = failure
        detail = "The grant belongs to another app." if code == 70000 else ""
        return entra_error(call, 400, error, code, detail)
    try:
        wanted, _ = split_scopes(form.get("scope", ""))
    except ValueError:
        return entra_error(call, 400, "invalid_scope", 70000, "Only Graph scopes are supported.")
    if not set(wanted) <= set(grant.scopes):
        return entra_error(call, 400, "invalid_grant", 65001)
    # A refresh may narrow the Graph permissions; the OIDC scopes stay as consented.
    granted = tuple(s for s in grant.scopes if s not in RESERVED_SCOPES)
    reserved = tuple(s for s in grant.scopes if s in RESERVED_SCOPES)
    return _user_tokens(call, app, user, (wanted or granted) + reserved, None)


def _user_extras(
    call: Call, app: SimApp, user: SimUser, scopes: tuple[str, ...], nonce: str | None
) -> dict[str, str]:
    """Return the refresh token, id_token and client_info the request's scopes call for."""
    state = call.state
    now = state.clock.now()
    extras: dict[str, str] = {}
    if "offline_access" in scopes:
        grant = RefreshGrant(app.client_id, user.oid, scopes, now)
        with state.lock:
            extras["refresh_token"] = state.grants.new_refresh_token(grant)
    if "openid" in scopes:
        id_claims = tokens.id_token_claims(
            issuer=state.issuer(user.tenant_id),
            user=user,
            client_id=app.client_id,
            nonce=nonce,
            now=now,
        )
        extras["id_token"] = state.key.sign(id_claims)
    if call.request.form.get("client_info") == "1":
        extras["client_info"] = tokens.client_info(user)
    return extras


def _user_tokens(
    call: Call, app: SimApp, user: SimUser, scopes: tuple[str, ...], nonce: str | None
) -> Response:
    state = call.state
    graph_scopes = [s for s in scopes if s not in RESERVED_SCOPES]
    claims = tokens.user_access_claims(
        issuer=state.issuer(user.tenant_id),
        user=user,
        client_id=app.client_id,
        scopes=graph_scopes,
        now=state.clock.now(),
        expires_in=ACCESS_TOKEN_LIFETIME_S,
    )
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(s for s in scopes if s != "offline_access"),
        "expires_in": ACCESS_TOKEN_LIFETIME_S,
        "ext_expires_in": ACCESS_TOKEN_LIFETIME_S,
        "access_token": state.key.sign(claims),
    }
    body.update(_user_extras(call, app, user, scopes, nonce))
    call.user = user
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _client_credentials(call: Call, app: SimApp) -> Response:
    tenant = call.args["tenant"]
    if tenant in MULTI_TENANT:
        return entra_error(call, 400, "invalid_request", 50059)
    scope = call.request.form.get("scope", "").strip()
    if " " in scope or not scope.endswith("/.default"):
        return entra_error(call, 400, "invalid_scope", 1002012)
    now = call.state.clock.now()
    claims = tokens.app_access_claims(
        issuer=call.state.issuer(tenant),
        app=app,
        tenant_id=tenant,
        audience=scope.removesuffix("/.default"),
        now=now,
        expires_in=ACCESS_TOKEN_LIFETIME_S,
    )
    return json_response(
        {
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "ext_expires_in": ACCESS_TOKEN_LIFETIME_S,
            "access_token": call.state.key.sign(claims),
        }
    )
