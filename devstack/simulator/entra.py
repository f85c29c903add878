"""Entra ID conventions shared by the identity endpoints: error bodies, tenants and scopes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.simulator import ids
from devstack.simulator.tokens import GRAPH_AUDIENCE
from devstack.simulator.web import json_response

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from devstack.simulator.web import Call

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
MULTI_TENANT = frozenset({"organizations", "common"})
# What a delegated "https://graph.microsoft.com/.default" stands for: the app's configured scopes.
DEFAULT_GRAPH_SCOPES = ("Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite", "User.Read")

DESCRIPTIONS = {
    50011: "The redirect URI specified in the request does not match the redirect URIs"
    " configured for the application.",
    50034: "The user account does not exist in the directory.",
    50059: "No tenant-identifying information found in either the request or implied by any"
    " provided credentials.",
    50076: "Due to a configuration change made by your administrator, or because you moved to a"
    " new location, you must use multi-factor authentication to access the resource.",
    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
    54005: "OAuth2 Authorization code was already redeemed, please retry with a new valid code"
    " or use an existing refresh token.",
    65001: "The user or administrator has not consented to use the application.",
    65004: "User declined to consent to access the app.",
    70000: "The request was denied because one or more grants are invalid or malformed.",
    70003: "The app requested an unsupported grant type.",
    70008: "The provided authorization code or refresh token has expired due to inactivity.",
    90002: "Tenant not found. Check to make sure you have the correct tenant ID.",
    90014: "The request body must contain a required parameter that is missing.",
    501481: "The Code_Verifier does not match the code_challenge supplied in the authorization"
    " request.",
    700016: "Application was not found in the directory.",
    700082: "The refresh token has expired due to inactivity.",
    1002012: "The provided value for scope is not valid. Client credential flows must have a"
    " scope value with /.default suffixed to the resource identifier.",
    7000215: "Invalid client secret provided.",
    9002313: "Invalid request. Request is malformed or invalid.",
    9002325: "Proof Key for Code Exchange is required and must use code_challenge_method S256.",
}


def describe(code: int, detail: str = "") -> str:
    """Return ``AADSTSnnnn: text`` for an Entra error number."""
    text = DESCRIPTIONS.get(code, "The request failed.")
    return f"AADSTS{code}: {text}{' ' + detail if detail else ''}"


def entra_error(call: Call, status: int, error: str, code: int, detail: str = "") -> Response:
    """Return a token-endpoint error in Entra's JSON shape."""
    now = call.state.clock.now_datetime().strftime("%Y-%m-%d %H:%M:%SZ")
    correlation = call.request.headers.get("client-request-id") or ids.guid()
    description = describe(code, detail)
    description += f"\r\nTrace ID: {call.request_id}\r\nCorrelation ID: {correlation}"
    description += f"\r\nTimestamp: {now}"
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": now,
        "trace_id": call.request_id,
        "correlation_id": correlation,
        "error_uri": f"{call.state.urls.base_url}/error?code={code}",
    }
    return json_response(body, status)


def tenant_is_valid(call: Call, tenant: str) -> bool:
    """Tell whether ``tenant`` names a known tenant or a multi-tenant alias."""
    if tenant in MULTI_TENANT:
        return True
    with call.state.lock:
        known = call.state.directory.is_known_tenant(tenant)
    return ids.is_guid(tenant) and (known or tenant == call.state.vault_tenant_id)


def split_scopes(raw: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a scope parameter into (Graph permission names, reserved OIDC scopes).

    Raises:
        ValueError: A scope names a resource other than Microsoft Graph.
    """
    graph: list[str] = []
    reserved: list[str] = []
    for scope in raw.split():
        if scope in RESERVED_SCOPES:
            reserved.append(scope)
            continue
        name = scope.removeprefix(f"{GRAPH_AUDIENCE}/")
        if "/" in name or ":" in name:
            message = f"scope {scope!r} is not a Microsoft Graph permission"
            raise ValueError(message)
        graph.extend(DEFAULT_GRAPH_SCOPES if name == ".default" else (name,))
    return tuple(dict.fromkeys(graph)), tuple(dict.fromkeys(reserved))
