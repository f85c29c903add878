"""The ``/_sim`` HTTP API: set up users, apps, mail, faults and time from other processes.

It takes no authentication: the simulator listens on loopback only and serves tests and demos.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from devstack.simulator import calendarops, operations
from devstack.simulator.faults import FaultRule
from devstack.simulator.web import Handler, Service, json_body, json_response

if TYPE_CHECKING:
    from devstack.simulator.web import Call


def _error(call: Call, status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def post_user(call: Call) -> Response:
    """Serve ``POST /_sim/users`` (JSON: tenant_id, upn, display_name, oid, time_zone)."""
    body = json_body(call)
    user = operations.add_user(
        call.state,
        body["tenant_id"],
        body["upn"],
        display_name=body.get("display_name"),
        oid=body.get("oid"),
        time_zone=body.get("time_zone", "UTC"),
    )
    return json_response(asdict(user), 201)


def post_app(call: Call) -> Response:
    """Serve ``POST /_sim/apps`` (JSON: client_id, client_secret, redirect_uris)."""
    body = json_body(call)
    app = operations.register_app(
        call.state, body["client_id"], body["client_secret"], body.get("redirect_uris", ())
    )
    return json_response({"client_id": app.client_id, "principal_oid": app.principal_oid}, 201)


def post_messages(call: Call) -> Response:
    """Serve ``POST /_sim/mailboxes/{upn}/messages`` (JSON: folder, messages)."""
    body = json_body(call)
    created = operations.load_messages(
        call.state, call.args["upn"], body.get("folder", "inbox"), body.get("messages", [])
    )
    return json_response({"ids": created}, 201)


def post_events(call: Call) -> Response:
    """Serve ``POST /_sim/calendars/{upn}/events`` (JSON: events, Graph-shaped)."""
    body = json_body(call)
    created = calendarops.load_events(call.state, call.args["upn"], body.get("events", []))
    return json_response({"ids": created}, 201)


def post_calendar_behaviour(call: Call) -> Response:
    """Serve ``POST /_sim/calendar-behaviour`` (JSON: legacy_series, all_day_instants)."""
    body = json_body(call)
    calendarops.set_behaviour(
        call.state,
        legacy_series=bool(body.get("legacy_series")),
        all_day_instants=bool(body.get("all_day_instants")),
    )
    return json_response({"updated": True})


def post_api_token(call: Call) -> Response:
    """Serve ``POST /_sim/api-token`` (JSON: the arguments of ``issue_api_token``)."""
    body = json_body(call)
    options: dict[str, Any] = {
        k: body[k] for k in ("roles", "upn", "audience", "expires_in", "not_before") if k in body
    }
    token = operations.issue_api_token(call.state, body["tenant_id"], body["oid"], **options)
    return json_response({"access_token": token, "token_type": "Bearer"})


def post_fault(call: Call) -> Response:
    """Serve ``POST /_sim/faults`` (JSON: the fields of ``FaultRule``)."""
    rule = FaultRule(**json_body(call))
    with call.state.lock:
        call.state.faults.add(rule)
    return json_response({"added": 1}, 201)


def delete_faults(call: Call) -> Response:
    """Serve ``DELETE /_sim/faults``."""
    with call.state.lock:
        call.state.faults.clear()
    return Response(status=204)


def post_time(call: Call) -> Response:
    """Serve ``POST /_sim/time`` (JSON: advance, in seconds)."""
    call.state.clock.advance(float(json_body(call).get("advance", 0)))
    return json_response({"now": call.state.clock.iso()})


def post_concurrency(call: Call) -> Response:
    """Serve ``POST /_sim/concurrency`` (JSON: limit, a number or null; retry_after_s)."""
    body = json_body(call)
    limit, retry_after = body.get("limit"), body.get("retry_after_s")
    call.state.concurrency.configure(
        None if limit is None else int(limit), None if retry_after is None else int(retry_after)
    )
    return json_response({"limit": call.state.concurrency.limit})


def get_concurrency(call: Call) -> Response:
    """Serve ``GET /_sim/concurrency/{upn}``: the mailbox's peak and refused requests."""
    user, _ = call.state.mailbox(call.args["upn"])
    peak, refused = call.state.concurrency.stats(user.oid)
    return json_response({"peak": peak, "refused": refused})


def get_requests(call: Call) -> Response:
    """Serve ``GET /_sim/requests``: the request log."""
    with call.state.lock:
        entries = [asdict(r) for r in call.state.log]
    return json_response({"value": entries})


def _guarded(handler: Handler) -> Handler:
    def run(call: Call) -> Response:
        try:
            return handler(call)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(call, 400, "BadRequest", f"{type(exc).__name__}: {exc}")

    return run


def _prepare(call: Call) -> Response | None:
    return None


def service() -> Service:
    """Return the control surface, mounted under ``/_sim``."""
    routes = [
        ("/_sim/users", "POST", post_user),
        ("/_sim/apps", "POST", post_app),
        ("/_sim/mailboxes/<upn>/messages", "POST", post_messages),
        ("/_sim/calendars/<upn>/events", "POST", post_events),
        ("/_sim/calendar-behaviour", "POST", post_calendar_behaviour),
        ("/_sim/api-token", "POST", post_api_token),
        ("/_sim/faults", "POST", post_fault),
        ("/_sim/faults", "DELETE", delete_faults),
        ("/_sim/time", "POST", post_time),
        ("/_sim/requests", "GET", get_requests),
        ("/_sim/concurrency", "POST", post_concurrency),
        ("/_sim/concurrency/<upn>", "GET", get_concurrency),
    ]
    rules = [Rule(p, endpoint=f"{m} {p}", methods=[m]) for p, m, _ in routes]
    return Service(
        name="control",
        url_map=Map(rules, strict_slashes=False),
        handlers={f"{m} {p}": _guarded(h) for p, m, h in routes},
        prepare=_prepare,
        error=_error,
    )
