"""Create a meeting with customer attendees in the caller's own calendar, through Graph.

The request is checked whole before Graph is called: a subject, a start before the end (ISO
8601 instants with an offset, or dates for an all-day meeting, end exclusive, within the years
1900 to 2999 that sync keeps, see :mod:`shared.sync.eventtimes`), attendees that are mail
addresses and include at least one customer (a company contact, or an address at a company's
domain). Graph creates the event (and invites the attendees); the product then stores it at
once, under the same key sync uses (its ``iCalUId`` and start), so when the event syncs back
from the calendar it updates that record instead of adding a second one. When Graph refuses the
event, nothing is created or stored and the refusal is raised as it came.

A timed meeting is sent to Graph as wall-clock times in its ``timeZone``, unless its start or
end falls in the hour the clocks repeat when they go back: such a time names two instants, so
the meeting is sent in UTC and Outlook records UTC as its zone.

Known limitations: the Graph call is made outside the mailbox's request leases (as consent's
are); recurring meetings cannot be created here. An all-day meeting is sent as midnights in its
zone, as Graph takes all-day events, also on a day whose midnight the zone skips or repeats
(Santiago and Havana change their clocks at midnight); how Graph places such a day is not known.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import GraphRequestError, NotFoundError, ValidationError
from shared.matching.addresses import parse_address
from shared.matching.companies import classify
from shared.sync.connections import ACTIVE, CALENDAR
from shared.sync.eventtimes import date_in_range, in_range, names_one_instant, zone_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.access.auth import Caller
    from shared.adapters.graphcalendar import GraphCalendarClient
    from shared.directory.service import DirectoryService
    from shared.matching.addresses import Address
    from shared.sync.calendar import CalendarSyncService
    from shared.sync.connectionstore import ConnectionStore

logger = logging.getLogger(__name__)

MAX_SUBJECT = 255
MAX_ATTENDEES = 500
MAX_BODY = 32_000
FIELDS = frozenset(
    {"subject", "start", "end", "isAllDay", "timeZone", "attendees", "location", "body"}
)


class MeetingService:
    """Creates meetings in a user's calendar and stores them as synced events."""

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        graph: GraphCalendarClient,
        directory: DirectoryService,
        calendar_sync: CalendarSyncService,
    ) -> None:
        self._connections = connections
        self._graph = graph
        self._directory = directory
        self._sync = calendar_sync

    def create(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a meeting from a request body; return the stored event's id and Graph's ids.

        Raises:
            ValidationError: naming the field that breaks a rule; nothing was created.
            ForbiddenError: when the caller is not a registered user.
            NotFoundError: when the caller has no active calendar connection.
            GraphRequestError: when Graph refuses the event; nothing was created or stored.
        """
        self._directory.require_member(caller)
        request = _checked(body)
        connection = self._connections.get(caller.tenant_id, caller.user_id, CALENDAR)
        if connection is None or connection.state != ACTIVE:
            msg = "no active calendar connection; connect your calendar first"
            raise NotFoundError(msg)
        index = self._sync.company_index(caller.tenant_id)
        if not classify(request.attendees, index).keep:
            field = "attendees"
            raise ValidationError(field, "must include a contact of a customer company")

        token = self._connections.access_token(connection)
        created = self._create_in_outlook(caller, token, request)
        key = self._sync.keep_created(connection, token, created)
        logger.info("meeting created", extra={"tenant": caller.tenant_id, "user": caller.user_id})
        return {"id": key, "graphId": created.get("id"), "iCalUId": created.get("iCalUId")}

    def _create_in_outlook(self, caller: Caller, token: str, request: _Meeting) -> dict[str, Any]:
        """Create the event through Graph.

        Raises:
            GraphRequestError: when Graph refuses the event; nothing was created or stored.
        """
        try:
            return self._graph.create_event(token, request.graph_body())
        except GraphRequestError as error:
            extra = {"tenant": caller.tenant_id, "user": caller.user_id, "graph_code": error.code}
            logger.warning("graph refused the new meeting", extra=extra)
            msg = f"Outlook refused the meeting and nothing was created: {error}"
            raise GraphRequestError(msg, error.status, error.code) from error


class _Meeting:
    """A checked meeting request."""

    def __init__(
        self,
        *,
        subject: str,
        times: tuple[str, str],
        all_day: bool,
        zone_name: str,
        attendees: list[Address],
        location: str,
        text: str,
    ) -> None:
        self.subject = subject
        self.times = times
        self.all_day = all_day
        self.zone_name = zone_name
        self.attendees = attendees
        self.location = location
        self.text = text

    def graph_body(self) -> dict[str, Any]:
        """Return the event as ``POST /me/events`` takes it."""
        start, end = self.times
        body: dict[str, Any] = {
            "subject": self.subject,
            "isAllDay": self.all_day,
            "start": {"dateTime": start, "timeZone": self.zone_name},
            "end": {"dateTime": end, "timeZone": self.zone_name},
            "attendees": [
                {"type": "required", "emailAddress": {"name": a.name, "address": a.address}}
                for a in self.attendees
            ],
        }
        if self.location:
            body["location"] = {"displayName": self.location}
        if self.text:
            body["body"] = {"contentType": "text", "content": self.text}
        return body


def _checked(body: Mapping[str, Any]) -> _Meeting:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "is not a field of a meeting")
    subject = _text(body, "subject", MAX_SUBJECT, required=True)
    all_day = body.get("isAllDay", False)
    if not isinstance(all_day, bool):
        name = "isAllDay"
        raise ValidationError(name, "must be true or false")
    zone_name = _text(body, "timeZone", 128) or "UTC"
    if zone_of(zone_name) is None:
        name = "timeZone"
        raise ValidationError(name, "must be an IANA or Windows time zone name")
    times, zone_name = (_dates(body), zone_name) if all_day else _instants(body, zone_name)
    return _Meeting(
        subject=subject,
        times=times,
        all_day=all_day,
        zone_name=zone_name,
        attendees=_attendees(body.get("attendees")),
        location=_text(body, "location", MAX_SUBJECT),
        text=_text(body, "body", MAX_BODY),
    )


def _text(body: Mapping[str, Any], field: str, limit: int, *, required: bool = False) -> str:
    value = body.get(field, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        rule = f"must be a {'non-empty ' if required else ''}string of at most {limit} characters"
        raise ValidationError(field, rule)
    return value.strip()


def _instants(body: Mapping[str, Any], zone_name: str) -> tuple[tuple[str, str], str]:
    """Return a timed meeting's start and end as Graph takes them, and the zone they are in.

    Graph reads a ``dateTime`` as a wall-clock time in its ``timeZone``. The meeting's own zone
    is used when both times name the instants asked for; when one falls in the hour the clocks
    repeat (01:30 on the night New York goes back names two instants), both go in UTC instead.
    """
    found = [_instant(body.get(field), field) for field in ("start", "end")]
    if found[1] <= found[0]:
        name = "end"
        raise ValidationError(name, "must be after start")
    zone = zone_of(zone_name) or UTC
    local = [moment.astimezone(zone).replace(tzinfo=None) for moment in found]
    if not all(names_one_instant(wall, zone) for wall in local):
        zone_name, local = "UTC", [moment.replace(tzinfo=None) for moment in found]
    return (local[0].isoformat(), local[1].isoformat()), zone_name


def _instant(value: Any, field: str) -> datetime:
    """Read an instant with an offset as a UTC instant within the times the product keeps."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError(field, "must be an ISO 8601 date-time with an offset")
    return in_range(moment, field)


def _dates(body: Mapping[str, Any]) -> tuple[str, str]:
    found = []
    for field in ("start", "end"):
        value = body.get(field)
        try:
            day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise ValidationError(field, "must be a date (YYYY-MM-DD) for an all-day meeting")
        found.append(date_in_range(day, field))
    if found[1] <= found[0]:
        name = "end"
        raise ValidationError(name, "must be after start (the end date is exclusive)")
    return f"{found[0].isoformat()}T00:00:00", f"{found[1].isoformat()}T00:00:00"


def _attendees(value: Any) -> list[Address]:
    if not isinstance(value, list) or not value or len(value) > MAX_ATTENDEES:
        rule = f"must be a list of 1 to {MAX_ATTENDEES} mail addresses"
        name = "attendees"
        raise ValidationError(name, rule)
    found: dict[str, Address] = {}
    for position, item in enumerate(value):
        address = parse_address(item) if isinstance(item, str) else None
        if address is None:
            name = f"attendees[{position}]"
            raise ValidationError(name, "must be a mail address")
        found.setdefault(address.address, address)
    return list(found.values())
