"""Microsoft Graph v1.0 calendar endpoints of the signed-in user's primary calendar.

``GET /me/calendarView/delta`` (window fixed by the first request, ``Prefer:
outlook.timezone`` and ``odata.maxpagesize``), ``GET /me/events/{id}`` (a single event, series
master or occurrence), ``GET /me/events/{id}/instances`` and ``POST /me/events``. Times come back
in the zone the ``outlook.timezone`` preference names, UTC when absent, as Graph documents; the
request log keeps each request's ``Prefer`` values, so a test can tell a client that asked for UTC
from one that got it by default.

Known limitations: ``$select``, ``$filter`` and ``$top`` are ignored; ``/instances`` answers in
one page; PATCH and DELETE of events exist only in the Python API and ``/_sim``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from devstack.simulator.calendar import render, render_master
from devstack.simulator.calendarsync import ExpiredError, TokenError
from devstack.simulator.graphhttp import graph_error, page_size, preferences
from devstack.simulator.recurrence import RecurrenceError, zone
from devstack.simulator.web import json_body, json_response

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from devstack.simulator.calendar import Calendar
    from devstack.simulator.calendarsync import CalendarSync
    from devstack.simulator.directory import SimUser
    from devstack.simulator.web import Call

READ_SCOPES = frozenset({"Calendars.ReadBasic", "Calendars.Read", "Calendars.ReadWrite"})
WRITE_SCOPES = frozenset({"Calendars.ReadWrite"})


def _owner(call: Call) -> SimUser:
    if call.user is None:
        message = "authenticate() sets the user before any handler runs"
        raise LookupError(message)
    return call.user


def _refused(call: Call, wanted: frozenset[str]) -> Response | None:
    granted = set(str((call.claims or {}).get("scp", "")).split())
    if granted & wanted:
        return None
    return graph_error(call, 403, "ErrorAccessDenied", "Access is denied. Check credentials.")


def _zone_name(call: Call) -> str:
    name = preferences(call).get("outlook.timezone", "UTC") or "UTC"
    try:
        zone(name)
    except RecurrenceError:
        return "UTC"
    return name


def _window(call: Call) -> tuple[datetime, datetime] | None:
    args = call.request.args
    try:
        low = _instant(args.get("startDateTime") or args.get("startdatetime") or "")
        high = _instant(args.get("endDateTime") or args.get("enddatetime") or "")
    except ValueError:
        return None
    return (low, high) if low < high else None


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _state(call: Call) -> tuple[Calendar, CalendarSync]:
    owner = _owner(call)
    return call.state.calendars[owner.oid], call.state.calendar_syncs[owner.oid]


def calendar_delta(call: Call) -> Response:
    """Serve ``GET /me/calendarView/delta``."""
    refused = _refused(call, READ_SCOPES)
    if refused is not None:
        return refused
    args = call.request.args
    with call.state.lock:
        owner, (_, sync) = _owner(call), _state(call)
        behaviour = call.state.calendar_behaviour
        try:
            if args.get("$skiptoken"):
                token = args["$skiptoken"]
            elif args.get("$deltatoken"):
                token = sync.follow(owner.oid, args["$deltatoken"], behaviour)
            else:
                window = _window(call)
                if window is None:
                    message = "startDateTime and endDateTime are required ISO 8601 values."
                    return graph_error(call, 400, "ErrorInvalidParameter", message)
                token = sync.start(owner.oid, window, _zone_name(call), behaviour)
            items, following = sync.page(owner.oid, token, page_size(call))
        except ExpiredError:
            message = "The sync state generation is not found. Synchronize again."
            return graph_error(call, 410, "syncStateNotFound", message)
        except TokenError:
            return graph_error(call, 400, "ErrorInvalidUrl", "The delta or skip token is invalid.")
    base = f"{call.state.urls.graph_url}/me/calendarView/delta"
    body: dict[str, Any] = {"@odata.context": f"{call.state.urls.graph_url}/$metadata#events"}
    if following is not None:
        body["@odata.nextLink"] = f"{base}?$skiptoken={quote(following)}"
    else:
        body["@odata.deltaLink"] = f"{base}?$deltatoken={quote(token)}"
    body["value"] = items
    return json_response(body, headers={"Preference-Applied": "odata.maxpagesize"})


def event(call: Call) -> Response:
    """Serve ``GET /me/events/{id}``: a single event, a series master or one occurrence."""
    refused = _refused(call, READ_SCOPES)
    if refused is not None:
        return refused
    zone_name = _zone_name(call)
    with call.state.lock:
        calendar, _ = _state(call)
        behaviour = call.state.calendar_behaviour
        found = calendar.find(call.args["event_id"])
        if found is None:
            return _not_found(call)
        stored, original = found
        if original is None and stored.recurrence is not None:
            return json_response(render_master(stored, zone_name, behaviour))
        if original is None:
            item = calendar.expand(stored, stored.start, stored.end)[0]
        else:
            found_item = calendar.instance(stored, original)
            if found_item is None:
                return _not_found(call)
            item = found_item
        return json_response(render(item, zone_name, behaviour))


def instances(call: Call) -> Response:
    """Serve ``GET /me/events/{id}/instances``: a series' occurrences and exceptions in a window."""
    refused = _refused(call, READ_SCOPES)
    if refused is not None:
        return refused
    window = _window(call)
    if window is None:
        message = "startDateTime and endDateTime are required ISO 8601 values."
        return graph_error(call, 400, "ErrorInvalidParameter", message)
    zone_name = _zone_name(call)
    with call.state.lock:
        calendar, _ = _state(call)
        behaviour = call.state.calendar_behaviour
        found = calendar.find(call.args["event_id"])
        if found is None or found[1] is not None:
            return _not_found(call)
        expanded = calendar.expand(found[0], *window)
        value = [render(i, zone_name, behaviour) for i in expanded if i.overlaps(*window)]
    return json_response({"value": value})


def create_event(call: Call) -> Response:
    """Serve ``POST /me/events``: create an event, copied to attendees who are simulator users."""
    refused = _refused(call, WRITE_SCOPES)
    if refused is not None:
        return refused
    body = json_body(call)
    owner = _owner(call)
    organizer = {"emailAddress": {"name": owner.display_name, "address": owner.upn}}
    data = {**body, "organizer": organizer}
    with call.state.lock:
        calendar, _ = _state(call)
        try:
            created = calendar.add(data, call.state.clock.iso())
        except RecurrenceError as error:
            return graph_error(call, 400, "ErrorInvalidRequest", str(error))
        _copy_to_attendees(call, {**data, "iCalUId": created.ical_uid}, owner)
        items = calendar.expand(created, created.start, created.end)
        zone_name, behaviour = _zone_name(call), call.state.calendar_behaviour
        if created.recurrence is not None or not items:
            rendered = render_master(created, zone_name, behaviour)
        else:
            rendered = render(items[0], zone_name, behaviour)
    return json_response(rendered, 201)


def _copy_to_attendees(call: Call, data: dict[str, Any], owner: SimUser) -> None:
    for attendee in data.get("attendees") or []:
        address = str(((attendee or {}).get("emailAddress") or {}).get("address", ""))
        user = call.state.directory.find_user(address) if address else None
        if user is None or user.oid == owner.oid or user.oid not in call.state.calendars:
            continue
        call.state.calendars[user.oid].add(data, call.state.clock.iso())


def _not_found(call: Call) -> Response:
    message = "The specified object was not found in the store."
    return graph_error(call, 404, "ErrorItemNotFound", message)


ROUTES: list[tuple[str, str, str, Any]] = [
    ("/calendarView/delta", "calendar_delta", "GET", calendar_delta),
    ("/calendar/calendarView/delta", "calendar_delta_primary", "GET", calendar_delta),
    ("/events/<path:event_id>/instances", "event_instances", "GET", instances),
    ("/events/<path:event_id>", "event", "GET", event),
    ("/events", "create_event", "POST", create_event),
]
"""(suffix, endpoint, method, handler) of each calendar route under ``/me`` and ``/users/{id}``."""
