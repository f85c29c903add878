"""The read API for calendar events: a company's meetings, latest start first.

Timed events come back as UTC instants (``start``, ``end``) with the zone they were created in;
all-day events as dates (``startDate``, ``endDate`` exclusive), the same for every reader in
every zone (BR-05). ``upcoming`` is true only for an event that has not ended and is not
cancelled, so a cancelled meeting or occurrence is never shown as upcoming (BR-04).

A company outside the caller's portfolio answers 404 like an unknown one, and each event goes
through the caller's field permissions for the ``event`` object type (``startDate`` and
``timeZone`` go with ``start``, ``endDate`` and ``upcoming`` with ``end``, ``attendeeCount``
with ``attendees``).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from shared.access.permissions import ObjectType
from shared.errors import NotFoundError
from shared.read.service import may_read, visible_company

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.access.auth import Caller
    from shared.access.permissions import AccessView, PermissionService
    from shared.adapters.tables import Entity
    from shared.directory.service import DirectoryService
    from shared.sync.eventstore import EventStore


class EventReadService:
    """Reads stored calendar events for API callers."""

    def __init__(
        self,
        directory: DirectoryService,
        events: EventStore,
        permissions: PermissionService,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._directory = directory
        self._events = events
        self._permissions = permissions
        self._clock = clock or (lambda: datetime.now(UTC))

    def company_events(
        self, caller: Caller, company_id: str, *, size: int, token: str | None
    ) -> dict[str, Any]:
        """Return one page of a company's events, latest start first.

        Raises:
            NotFoundError: when the company does not exist in the caller's portfolio.
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        view = self._permissions.view_for(caller)
        company = visible_company(self._directory, caller, view, company_id)
        rows, next_token = self._events.company_page(
            caller.tenant_id, company.company_id, size=size, token=token
        )
        now = self._clock()
        items = [view.mask(ObjectType.EVENT, event_view(row, now)) for row in rows]
        return {"items": items, "continuationToken": next_token}

    def readable_event(self, caller: Caller, view: AccessView, event_id: str) -> Entity:
        """Return a stored event the caller may read, as an email is readable.

        An event is readable when one of its companies is in the caller's portfolio or the
        caller's own calendar holds it.

        Raises:
            NotFoundError: when there is no such event in the caller's tenant, or it is neither
                in their portfolio nor in their own calendar; the two answer alike.
        """
        row = self._events.get_event(caller.tenant_id, event_id)
        if row is None or not may_read(self._directory, caller, view, row, self._events.holders):
            message = f"event {event_id} not found"
            raise NotFoundError(message)
        return row


def event_view(row: Entity, now: datetime) -> dict[str, Any]:
    """Return a stored event (or its company summary) as the API shows it."""
    all_day = bool(row.get("isAllDay"))
    cancelled = bool(row.get("isCancelled"))
    view: dict[str, Any] = {
        "id": row.get("eventKey") or row.get("RowKey"),
        "iCalUId": row.get("iCalUId", ""),
        "type": row.get("type", ""),
        "subject": row.get("subject", ""),
        "organizer": json.loads(row.get("organizer") or "{}"),
        "isAllDay": all_day,
        "start": None if all_day else row.get("start"),
        "end": None if all_day else row.get("end"),
        "startDate": row.get("startDate") or None,
        "endDate": row.get("endDate") or None,
        "timeZone": row.get("timeZone", ""),
        "location": row.get("location", ""),
        "attendeeCount": row.get("attendeeCount", 0),
        "isCancelled": cancelled,
        "upcoming": not cancelled and _not_over(row, all_day, now),
    }
    return view


def _not_over(row: Entity, all_day: bool, now: datetime) -> bool:
    if all_day:
        end_date = str(row.get("endDate") or "")
        return bool(end_date) and date.fromisoformat(end_date) > now.astimezone(UTC).date()
    end = str(row.get("end") or "")
    return bool(end) and datetime.fromisoformat(end.replace("Z", "+00:00")) > now
