"""WSGI applications: routing, caller identification, fault injection and the request log."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from devstack.simulator import (
    attachments,
    control,
    graph,
    identity,
    ids,
    keyvault,
    tokenendpoint,
)
from devstack.simulator.concurrency import THROTTLED_BODY
from devstack.simulator.entra import entra_error
from devstack.simulator.faults import RequestRecord
from devstack.simulator.web import Call, Service, json_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from devstack.simulator.faults import FaultRule
    from devstack.simulator.state import SimState

logger = logging.getLogger(__name__)


def _identify_token_caller(call: Call) -> Response | None:
    if call.request.path.endswith("/oauth2/v2.0/token"):
        oid = tokenendpoint.grant_user(call)
        with call.state.lock:
            call.user = call.state.directory.find_user(oid) if oid else None
    return None


def identity_service() -> Service:
    """Return the Entra ID surface (discovery, keys, authorize, consent, token)."""
    routes = [
        ("/<tenant>/v2.0/.well-known/openid-configuration", "GET", identity.discovery),
        ("/<tenant>/discovery/v2.0/keys", "GET", identity.jwks),
        ("/<tenant>/oauth2/v2.0/authorize", "GET", identity.authorize),
        ("/<tenant>/oauth2/v2.0/authorize/decision", "POST", identity.decision),
        ("/<tenant>/oauth2/v2.0/token", "POST", tokenendpoint.token),
    ]
    return Service(
        name="identity",
        url_map=Map([Rule(p, endpoint=p, methods=[m]) for p, m, _ in routes], strict_slashes=False),
        handlers={p: h for p, _, h in routes},
        prepare=_identify_token_caller,
        error=lambda call, status, code, text: entra_error(call, status, "invalid_request", 90014),
    )


def _fault_response(rule: FaultRule) -> Response:
    if rule.body is None:
        return Response(status=rule.status, headers=rule.headers)
    return json_response(rule.body, rule.status, dict(rule.headers))


def _dispatch(service: Service, call: Call) -> Response:
    adapter = service.url_map.bind_to_environ(call.request.environ)
    try:
        endpoint, args = adapter.match()
    except HTTPException as exc:
        status = exc.code or 404
        return service.error(call, status, "NotFound" if status == 404 else "BadRequest", exc.name)
    call.args = dict(args)
    stopped = service.prepare(call)
    if stopped is not None:
        return stopped
    mailbox = call.user.oid if service.name == "graph" and call.user is not None else None
    if mailbox is None:
        return _serve(service, call, endpoint)
    limits = call.state.concurrency
    if not limits.enter(mailbox):
        headers = {"Retry-After": str(limits.retry_after_s)}
        return json_response(THROTTLED_BODY, 429, headers)
    try:
        return _serve(service, call, endpoint)
    finally:
        limits.leave(mailbox)


def _serve(service: Service, call: Call, endpoint: object) -> Response:
    request = call.request
    fault = call.state.take_fault(service.name, request.method, request.path, call.caller_keys())
    if fault is not None and fault.delay_s:
        time.sleep(fault.delay_s)
    if fault is not None and fault.status:
        return _fault_response(fault)
    try:
        return service.handlers[str(endpoint)](call)
    except Exception as exc:
        # Only the type above DEBUG: exception texts can name users; the traceback is for debugging.
        failure = {"request_id": call.request_id, "error_type": type(exc).__name__}
        logger.warning("simulator handler failed", extra=failure)
        logger.debug("simulator handler traceback", exc_info=True, extra=failure)
        return service.error(call, 500, "InternalServerError", "The simulator failed.")


def service_app(state: SimState, service: Service) -> WSGIApplication:
    """Return a WSGI application that serves ``service`` from ``state``."""

    @Request.application
    def application(request: Request) -> Response:
        call = Call(state, request, {}, ids.guid())
        response = _dispatch(service, call)
        response.headers["request-id"] = call.request_id
        keys = call.caller_keys()
        record = RequestRecord(
            service.name,
            request.method,
            request.path,
            keys[0] if keys else None,
            response.status_code,
            tuple(request.headers.getlist("Prefer")),
        )
        state.record(record)
        logger.debug(
            "simulator request served",
            extra={
                "service": service.name,
                "status": response.status_code,
                "request_id": call.request_id,
            },
        )
        return response

    return application


def main_app(state: SimState) -> WSGIApplication:
    """Return the application for the main port: identity at the root, Graph and control below."""
    by_prefix = [
        (graph.PREFIX + "/", service_app(state, graph.service())),
        ("/_sim/", service_app(state, control.service())),
        (attachments.UPLOAD_PREFIX, service_app(state, attachments.upload_service())),
    ]
    fallback = service_app(state, identity_service())

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        target = next((app for prefix, app in by_prefix if path.startswith(prefix)), fallback)
        return list(target(environ, start_response))

    return application


def vault_app(state: SimState) -> WSGIApplication:
    """Return the application for the Key Vault port."""
    return service_app(state, keyvault.service())
