"""How kept calendar events are laid out in Table Storage: the tables, their keys and rows.

Tables:

- ``events``: one row per meeting occurrence, keyed by the SHA-256 of the tenant, the series'
  (or single event's) ``iCalUId``, the occurrence's original start (a date for all-day series)
  and the organiser's address, so the copies of one meeting in many attendees' calendars are one
  record, an occurrence moved to another time stays the same record, and an invitation that
  reuses a meeting's uid under another organiser never merges into it (nor gives its holder a
  say over it). An event without ``iCalUId`` is keyed
  per calendar by its id, never merged. Partitions: the tenant plus the key's first two digits.
- ``eventholders``: one row per (event, user) whose calendar holds it.
- ``calendaritems``: per connection, Graph event id to event key, start, series master id and
  the id of the last full round that saw it (for reconciling a window and a series).
- ``calendarseries``: per connection, what a series master says (``iCalUId``, subject,
  organiser, attendees, cancelled, all-day, its zone and location, when it was created), so
  occurrences that come without them are matched, timed and keyed through it.
- ``companyevents``: per (tenant, company), one summary row per event, latest start first.
- ``eventtombstones``: what a user or admin deleted, so it never syncs back: one row per event
  key (the meeting occurrence in the tenant, in the event's partition) and one per calendar item
  of every holder (its Graph id, in a ``~i|<connection>`` partition), so neither another
  attendee's copy nor the holder's own item (even moved to another time) comes back.

:class:`shared.sync.eventstore.EventStore` writes and reads these rows.

Known limitations: at most :data:`MAX_ATTENDEES` attendees are kept per event (the count is
kept whole); the event body is not stored. An invitation forged to name the
real organiser as well as the uid and start still merges: the organiser field of an invitation
is not authenticated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.adapters.tablelimits import table_key
from shared.matching.addresses import parse_address

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.adapters.tables import Entity
    from shared.sync.eventtimes import EventTimes

EVENTS = "events"
HOLDERS = "eventholders"
ITEMS = "calendaritems"
SERIES = "calendarseries"
INDEX = "companyevents"
TOMBSTONES = "eventtombstones"
ITEM_TOMBSTONE_PREFIX = "~i|"
MAX_ATTENDEES = 100
SUBJECT_CHARS = 1024
_NEVER = 9_999_999_999


def event_key(
    tenant_id: str, uid: str, anchor: str, connection: str, item_id: str, *, organizer: str = ""
) -> str:
    """Return the tenant-wide key of an event occurrence (per calendar when it has no uid).

    The organiser's address is part of it: every genuine copy of a meeting names the same
    organiser, while an invitation that only reuses a meeting's ``iCalUId`` (which every invitee
    can read in its .ics) and names someone else stays a record of its own.
    """
    if not uid:
        scope = f"item\n{connection}\n{item_id}"
    else:
        scope = f"ical\n{tenant_id}\n{uid}\n{anchor}\n{_organizer_address(organizer)}"
    return hashlib.sha256(scope.encode("utf-8")).hexdigest()


def _organizer_address(address: str) -> str:
    parsed = parse_address(address) if address else None
    return parsed.address if parsed else address.strip().casefold()


def event_partition(tenant_id: str, key: str) -> str:
    """Return the partition of an event: the tenant spread over 256 shards."""
    return table_key(tenant_id, key[:2])


@dataclass(frozen=True, slots=True)
class KeptEvent:
    """An event to store: its identity, times, what it says and the companies it belongs to."""

    item_id: str
    series_uid: str
    anchor: str
    kind: str
    times: EventTimes
    subject: str
    organizer: Mapping[str, str]
    attendees: Sequence[Mapping[str, str]]
    cancelled: bool
    company_ids: frozenset[str]
    series_master_id: str = ""
    location: str = ""
    created_at: str = ""
    """When the event came into the calendar (UTC, seconds): a purge keeps what is newer."""


def event_row(tenant_id: str, key: str, event: KeptEvent, companies: frozenset[str]) -> Entity:
    """Return the ``events`` row of a kept event, linked to ``companies``."""
    times = event.times
    attendees = [dict(a) for a in event.attendees]
    return {
        "PartitionKey": event_partition(tenant_id, key),
        "RowKey": key,
        "tenantId": tenant_id,
        "iCalUId": event.series_uid[:1024],
        "anchor": event.anchor,
        "type": event.kind,
        "subject": event.subject[:SUBJECT_CHARS],
        "organizer": json.dumps(dict(event.organizer)),
        "attendees": json.dumps(attendees[:MAX_ATTENDEES]),
        "attendeeCount": len(attendees),
        "location": event.location[:SUBJECT_CHARS],
        "isAllDay": times.all_day,
        "start": stamp(times.start),
        "end": stamp(times.end),
        "startDate": times.start_date.isoformat() if times.start_date else "",
        "endDate": times.end_date.isoformat() if times.end_date else "",
        "timeZone": times.zone[:256],
        "isCancelled": event.cancelled,
        "companyIds": json.dumps(sorted(companies)),
        "sortTime": stamp(times.start),
    }


def summary_row(key: str, row: Entity) -> Entity:
    """Return what a ``companyevents`` row repeats of an event's row."""
    names = (
        "iCalUId", "type", "subject", "organizer", "isAllDay", "start", "end", "startDate",
        "endDate", "timeZone", "isCancelled", "attendeeCount", "location",
    )  # fmt: skip
    return {"eventKey": key, **{name: row[name] for name in names}}


def companies_of(row: Entity | None) -> frozenset[str]:
    """Return the companies an event row is linked to; none when there is no row."""
    if row is None:
        return frozenset()
    return frozenset(json.loads(row.get("companyIds") or "[]"))


def stamp(moment: datetime) -> str:
    """Return a moment as the UTC text the rows hold."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def index_row_key(sort_time: str, key: str) -> str:
    """Return the ``companyevents`` row key of an event: latest start first."""
    # Latest start first; dates outside 1970..2286 are clamped to keep the order lexical.
    moment = datetime.fromisoformat(sort_time.replace("Z", "+00:00"))
    seconds = min(max(int(moment.timestamp()), 0), _NEVER)
    return f"{_NEVER - seconds:010d}|{key}"
