"""The host's WSGI application: HTTP-triggered functions plus the admin endpoints.

Function routes live under ``/{routePrefix}/``. A path that matches a route whose methods do not
include the request's method gets 405 with an ``Allow`` header; a path no route matches gets a
404 JSON body. An exception in a function gives 500 with a generic JSON body carrying the
invocation id; the traceback goes to the host log. ``POST /admin/functions/{name}`` runs a timer
or queue function on demand (202) and ``GET /admin/host/status`` reports the functions and how
many timer and queue invocations are in flight.

Known limitations: HTTP auth levels are not enforced, exactly as under ``func start``: keys are
neither required nor checked, on function routes or on the admin endpoints.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

import azure.functions as func
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from devstack.host.invocation import InvocationRunner
    from devstack.host.loader import HttpFunction

logger = logging.getLogger(__name__)

ADMIN_FUNCTIONS = "/admin/functions/"
ADMIN_STATUS = "/admin/host/status"


class AdminActions(Protocol):
    """What the admin endpoints need from the host."""

    def function_names(self) -> list[str]:
        """Return the names of all loaded functions."""

    def invoke_admin(self, name: str, payload: str) -> str:
        """Start ``name`` with ``payload``; return ``started``, ``unknown`` or ``http``."""


class HostApplication:
    """Dispatch requests to HTTP functions and to the admin endpoints."""

    def __init__(
        self,
        functions: list[HttpFunction],
        route_prefix: str,
        runner: InvocationRunner,
        admin: AdminActions,
    ) -> None:
        # Routes with more literal segments are tried first, as ASP.NET Core orders them.
        self._functions = sorted(functions, key=lambda function: function.route.precedence)
        self._prefix = f"/{route_prefix}/" if route_prefix else "/"
        self._runner = runner
        self._admin = admin

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path == ADMIN_STATUS:
            return self._status()
        if path.startswith(ADMIN_FUNCTIONS) and request.method == "POST":
            return self._admin_invoke(path.removeprefix(ADMIN_FUNCTIONS), request)
        if path.startswith(self._prefix) or path + "/" == self._prefix:
            return self._route(path.removeprefix(self._prefix.rstrip("/")), request)
        return _json(
            {"error": {"code": "not_found", "message": "no function serves this path"}}, 404
        )

    def _route(self, path: str, request: Request) -> Response:
        allowed: set[str] = set()
        for function in self._functions:
            route_params = function.route.match(path)
            if route_params is None:
                continue
            if function.methods is None or request.method in function.methods:
                return self._invoke_http(function, request, route_params)
            allowed.update(function.methods)
        if allowed:
            response = _json(
                {"error": {"code": "method_not_allowed", "message": "method not allowed here"}},
                405,
            )
            response.headers["Allow"] = ", ".join(sorted(allowed))
            return response
        return _json(
            {"error": {"code": "not_found", "message": "no function serves this path"}}, 404
        )

    def _invoke_http(
        self, function: HttpFunction, request: Request, route_params: dict[str, str]
    ) -> Response:
        http_request = func.HttpRequest(
            method=request.method,
            url=request.url,
            headers=dict(request.headers.items()),
            params=request.args.to_dict(),
            route_params=route_params,
            body=request.get_data(),
        )
        result = self._runner.invoke(function, http_request, trigger="http")
        if not result.succeeded:
            return _json(
                {
                    "error": {"code": "internal", "message": "internal error"},
                    "invocationId": result.invocation_id,
                },
                500,
            )
        try:
            return _to_response(result.value)
        except TypeError:
            logger.exception(
                "function returned an unsupported value",
                extra={"function": function.name, "invocation_id": result.invocation_id},
            )
            return _json(
                {
                    "error": {"code": "internal", "message": "internal error"},
                    "invocationId": result.invocation_id,
                },
                500,
            )

    def _status(self) -> Response:
        body = {
            "state": "Running",
            "functions": self._admin.function_names(),
            "inflight": self._runner.inflight,
        }
        return _json(body, 200)

    def _admin_invoke(self, name: str, request: Request) -> Response:
        try:
            payload = json.loads(request.get_data() or b"{}")
            text = payload.get("input", "") if isinstance(payload, dict) else None
        except ValueError:
            text = None
        if not isinstance(text, str):
            return _json({"error": 'body must be JSON like {"input": "..."}'}, 400)

        outcome = self._admin.invoke_admin(name, text)
        if outcome == "unknown":
            return _json({"error": "no such function", "name": name}, 404)
        if outcome == "http":
            return _json({"error": "HTTP functions are invoked through their route"}, 400)
        return Response(status=202)


def _to_response(value: Any) -> Response:
    if isinstance(value, str):
        return Response(value, status=200, content_type="text/plain; charset=utf-8")
    if not isinstance(value, func.HttpResponse):
        message = f"an HTTP function must return func.HttpResponse or str, got {type(value)}"
        raise TypeError(message)
    headers = list(value.headers.items())
    if not any(name.lower() == "content-type" for name, _ in headers):
        # The worker adds a charset only to text/* types (azure.functions.http converter).
        content_type = value.mimetype
        if content_type.startswith("text/"):
            content_type = f"{content_type}; charset={value.charset}"
        headers.append(("Content-Type", content_type))
    return Response(value.get_body(), status=value.status_code, headers=headers)


def _json(body: object, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
