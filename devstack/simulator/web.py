"""Plumbing shared by the simulator's three HTTP surfaces: the call context and response helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from werkzeug.routing import Map
    from werkzeug.wrappers import Request

    from devstack.simulator.directory import SimUser
    from devstack.simulator.state import SimState


@dataclass(slots=True)
class Call:
    """One request on its way through a service: who asks, for what, under which request id."""

    state: SimState
    request: Request
    args: dict[str, str]
    request_id: str
    user: SimUser | None = None
    principal: str | None = None
    claims: dict[str, Any] | None = None

    def caller_keys(self) -> tuple[str, ...]:
        """Return the oid (and UPN) that fault rules and the request log know the caller by."""
        if self.user is not None:
            return (self.user.oid, self.user.upn)
        return (self.principal,) if self.principal else ()


Handler = Callable[[Call], Response]
ErrorRenderer = Callable[[Call, int, str, str], Response]


@dataclass(frozen=True, slots=True)
class Service:
    """A routed HTTP surface.

    Attributes:
        name: ``identity``, ``graph``, ``vault`` or ``control``; used in logs and fault rules.
        url_map: Routes; each rule's endpoint is a key of ``handlers``.
        handlers: Request handlers by endpoint name.
        prepare: Runs before fault rules and the handler; sets ``Call.user`` and returns a
            response to stop the request (e.g. a 401), or None to go on.
        error: Renders an error in the service's own JSON shape.
    """

    name: str
    url_map: Map
    handlers: dict[str, Handler]
    prepare: Callable[[Call], Response | None]
    error: ErrorRenderer


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return ``body`` serialised as a JSON response."""
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def json_body(call: Call) -> dict[str, Any]:
    """Return the request's JSON object body, or an empty dict when there is none."""
    data = call.request.get_json(silent=True, force=True)
    return data if isinstance(data, dict) else {}
