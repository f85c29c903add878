"""Microsoft Graph's HTTP conventions: bearer authentication, errors, Prefer headers, $select."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.simulator.tokens import GRAPH_APP_ID, GRAPH_AUDIENCE, TokenInvalidError
from devstack.simulator.web import json_response

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from devstack.simulator.web import Call

MAIL_SCOPES = frozenset({"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"})
_CHALLENGE = (
    'Bearer realm="", authorization_uri="{authority}/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)


def graph_error(call: Call, status: int, code: str, message: str) -> Response:
    """Return an error in Graph's JSON shape, carrying the request id."""
    inner = {
        "date": call.state.clock.iso(),
        "request-id": call.request_id,
        "client-request-id": call.request.headers.get("client-request-id", call.request_id),
    }
    return json_response({"error": {"code": code, "message": message, "innerError": inner}}, status)


def authenticate(call: Call) -> Response | None:
    """Check the bearer token and set ``call.user``; return a 401/403 response when refused."""
    header = call.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _unauthorized(call, "Access token is empty.")
    try:
        claims = call.state.key.verify(
            token.strip(), audience=(GRAPH_AUDIENCE, GRAPH_APP_ID), now=call.state.clock.now()
        )
    except TokenInvalidError as exc:
        return _unauthorized(call, f"Access token validation failure: {exc}")
    call.claims = claims
    with call.state.lock:
        call.user = call.state.directory.find_user(str(claims.get("oid", "")))
    if claims.get("idtyp") == "app" or call.user is None:
        message = "/me request is only valid with delegated authentication flow."
        return graph_error(call, 400, "BadRequest", message)
    return _check_target(call)


def _check_target(call: Call) -> Response | None:
    target = call.args.pop("user_key", None)
    user = call.user
    if (
        target is not None
        and user is not None
        and target.casefold()
        not in (
            user.oid,
            user.upn.casefold(),
        )
    ):
        return graph_error(call, 403, "ErrorAccessDenied", "Access is denied. Check credentials.")
    return None


def _unauthorized(call: Call, message: str) -> Response:
    response = graph_error(call, 401, "InvalidAuthenticationToken", message)
    authority = call.state.urls.base_url
    response.headers["WWW-Authenticate"] = _CHALLENGE.format(authority=authority)
    return response


def require_mail_scope(call: Call) -> Response | None:
    """Return a 403 unless the token grants a mail read permission."""
    granted = set(str((call.claims or {}).get("scp", "")).split())
    if granted & MAIL_SCOPES:
        return None
    return graph_error(call, 403, "ErrorAccessDenied", "Access is denied. Check credentials.")


def preferences(call: Call) -> dict[str, str]:
    """Return the request's ``Prefer`` preferences by lower-cased name, quotes removed."""
    found: dict[str, str] = {}
    for header in call.request.headers.getlist("Prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                found[name.strip().lower()] = value.strip().strip('"')
    return found


def wants_immutable_ids(call: Call) -> bool:
    """Tell whether the request carries ``Prefer: IdType="ImmutableId"``."""
    return preferences(call).get("idtype", "").lower() == "immutableid"


def page_size(call: Call, default: int = 10) -> int:
    """Return the ``odata.maxpagesize`` preference, or ``default`` when absent or invalid."""
    raw = preferences(call).get("odata.maxpagesize", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


def select_fields(raw: str | None) -> frozenset[str] | None:
    """Return the property names of a ``$select`` option, or None when there is none."""
    if not raw:
        return None
    return frozenset(name.strip() for name in raw.split(",") if name.strip())
