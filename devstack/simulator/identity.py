"""Entra ID's browser-facing and discovery endpoints: OIDC metadata, keys, authorize, consent.

Known limitations: no sign-in step (the user is named by ``login_hint`` or typed on the consent
page), no ``prompt``/``max_age``/``claims`` handling, ``response_mode=fragment`` is refused, and
only Microsoft Graph permissions can be requested in a delegated flow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from werkzeug.utils import redirect

from devstack.simulator import ids, pages
from devstack.simulator.directory import SimApp
from devstack.simulator.entra import MULTI_TENANT, describe, split_scopes, tenant_is_valid
from devstack.simulator.grants import AuthCode, AuthorizeRequest
from devstack.simulator.web import json_response

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Response

    from devstack.simulator.directory import SimUser
    from devstack.simulator.web import Call

RESPONSE_MODES = ("query", "form_post")


def discovery(call: Call) -> Response:
    """Serve ``/{tenant}/v2.0/.well-known/openid-configuration``."""
    tenant = call.args["tenant"]
    if not tenant_is_valid(call, tenant):
        return json_response({"error": "invalid_tenant", "error_description": describe(90002)}, 400)
    root = f"{call.state.urls.base_url}/{tenant}"
    # Entra publishes a template issuer for multi-tenant aliases; tokens carry the real tenant.
    issuer_tenant = "{tenantid}" if tenant in MULTI_TENANT else tenant
    return json_response(
        {
            "issuer": call.state.issuer(issuer_tenant),
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_modes_supported": list(RESPONSE_MODES),
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "nonce",
                "name",
                "oid",
                "tid",
                "preferred_username",
                "ver",
            ],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
        }
    )


def jwks(call: Call) -> Response:
    """Serve ``/{tenant}/discovery/v2.0/keys``."""
    return json_response(call.state.key.jwks())


def _with_params(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def reply(uri: str, mode: str, params: dict[str, str | None]) -> Response:
    """Send the authorize result to the app's redirect URI the way ``response_mode`` asks."""
    present = {k: v for k, v in params.items() if v is not None}
    if mode == "form_post":
        return pages.form_post_page(uri, present)
    return redirect(_with_params(uri, present), 302)


def _find_hint(call: Call, args: MultiDict[str, str]) -> tuple[SimUser | None, Response | None]:
    hint = args.get("login_hint")
    if not hint:
        return None, None
    with call.state.lock:
        user = call.state.directory.find_user(hint)
    tenant = call.args["tenant"]
    if user is None or (tenant not in MULTI_TENANT and user.tenant_id != tenant):
        return None, pages.error_page(describe(50034))
    return user, None


def _protocol_error(args: MultiDict[str, str]) -> tuple[str, int] | None:
    if args.get("response_type") != "code":
        return "unsupported_response_type", 70003
    if not args.get("scope"):
        return "invalid_request", 90014
    if not args.get("code_challenge") or args.get("code_challenge_method") != "S256":
        return "invalid_request", 9002325
    if args.get("response_mode", "query") not in RESPONSE_MODES:
        return "invalid_request", 90014
    return None


def _registered_client(call: Call) -> SimApp | Response:
    """Return the app, or the error page Entra shows when it cannot trust the redirect URI."""
    args = call.request.args
    with call.state.lock:
        app = call.state.directory.find_app(args.get("client_id", ""))
    if not tenant_is_valid(call, call.args["tenant"]):
        return pages.error_page(describe(90002))
    if app is None:
        return pages.error_page(describe(700016))
    if args.get("redirect_uri", "") not in app.redirect_uris:
        return pages.error_page(describe(50011))
    return app


def _rejection(args: MultiDict[str, str]) -> Response | None:
    """Return the redirect carrying a protocol error back to the app, or None when valid."""
    problem = _protocol_error(args)
    try:
        split_scopes(args.get("scope", ""))
    except ValueError:
        problem = problem or ("invalid_scope", 70000)
    if problem is None:
        return None
    error, code = problem
    mode = args.get("response_mode", "query")
    params = {"error": error, "error_description": describe(code), "state": args.get("state")}
    return reply(args["redirect_uri"], mode if mode in RESPONSE_MODES else "query", params)


def authorize(call: Call) -> Response:
    """Serve ``GET /{tenant}/oauth2/v2.0/authorize``: validate, then show the consent page."""
    app = _registered_client(call)
    if not isinstance(app, SimApp):
        return app
    args = call.request.args
    rejection = _rejection(args)
    if rejection is not None:
        return rejection
    user, failure = _find_hint(call, args)
    if failure is not None:
        return failure

    graph_scopes, reserved = split_scopes(args["scope"])
    request = AuthorizeRequest(
        txn=ids.opaque_token(),
        client_id=app.client_id,
        redirect_uri=args["redirect_uri"],
        scopes=graph_scopes + reserved,
        state=args.get("state"),
        nonce=args.get("nonce"),
        code_challenge=args["code_challenge"],
        response_mode=args.get("response_mode", "query"),
        user_oid=user.oid if user else None,
        created=call.state.clock.now(),
    )
    with call.state.lock:
        call.state.grants.put_transaction(request)
    action = f"/{call.args['tenant']}/oauth2/v2.0/authorize/decision"
    user_name = user.display_name if user else None
    return pages.consent_page(action, request, app_name=app.client_id, user_name=user_name)


def _decision_user(call: Call, request: AuthorizeRequest) -> SimUser | None:
    key = call.request.form.get("user") or request.user_oid
    with call.state.lock:
        user = call.state.directory.find_user(key) if key else None
    tenant = call.args["tenant"]
    if user is not None and tenant not in MULTI_TENANT and user.tenant_id != tenant:
        return None
    return user


def _issue_code(call: Call, request: AuthorizeRequest, user: SimUser, now: float) -> str:
    """Store a code for the accepted request; a new consent also lifts earlier revocations."""
    code = AuthCode(
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        scopes=request.scopes,
        nonce=request.nonce,
        code_challenge=request.code_challenge,
        user_oid=user.oid,
        issued=now,
    )
    with call.state.lock:
        call.state.grants.restore(user.oid)
        return call.state.grants.new_code(code)


def decision(call: Call) -> Response:
    """Serve ``POST /{tenant}/oauth2/v2.0/authorize/decision``: the consent page's answer."""
    form = call.request.form
    now = call.state.clock.now()
    with call.state.lock:
        request = call.state.grants.pop_transaction(form.get("txn", ""), now)
    if request is None:
        return pages.error_page("The sign-in request is unknown or has expired; start again.")
    if form.get("decision") != "accept":
        params = {
            "error": "access_denied",
            "error_description": describe(65004),
            "state": request.state,
        }
        return reply(request.redirect_uri, request.response_mode, params)

    user = _decision_user(call, request)
    if user is None:
        return pages.error_page(describe(50034))
    text = _issue_code(call, request, user, now)
    call.user = user
    return reply(
        request.redirect_uri, request.response_mode, {"code": text, "state": request.state}
    )
