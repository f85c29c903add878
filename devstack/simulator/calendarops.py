"""Scripted calendar changes, shared by the simulator's Python API and the ``/_sim`` HTTP API."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devstack.simulator.calendar import CalendarBehaviour, render
from devstack.simulator.icsload import CalendarLoad, load_file, load_ics
from devstack.simulator.recurrence import parse_graph_time, rrule_from_graph

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from devstack.simulator.calendar import Calendar, SimEvent
    from devstack.simulator.state import SimState


def _calendar(state: SimState, upn: str) -> Calendar:
    user, _ = state.mailbox(upn)
    return state.calendars[user.oid]


def load_events(state: SimState, upn: str, events: Iterable[dict[str, Any]]) -> list[str]:
    """Add Graph-shaped events (single or series masters) to a calendar; return their ids."""
    with state.lock:
        calendar = _calendar(state, upn)
        return [calendar.add(event, state.clock.iso()).id for event in events]


def load_ics_bytes(state: SimState, upn: str, raw: bytes) -> CalendarLoad:
    """Add the events of an iCalendar document to a calendar; return what loaded and skipped.

    Raises:
        CalendarLoadError: when the document cannot be loaded at all.
    """
    loaded = load_ics(raw, state.clock.iso())
    with state.lock:
        calendar = _calendar(state, upn)
        for event in loaded.events:
            calendar.put(event)
    return loaded


def load_calendar_file(state: SimState, upn: str, path: Path) -> list[str]:
    """Load an ``.ics`` or Graph-shaped ``.json`` file into a calendar; return the event ids.

    Raises:
        CalendarLoadError: when the file cannot be loaded.
    """
    loaded = load_file(path)
    if isinstance(loaded, list):
        return load_events(state, upn, loaded)
    with state.lock:
        calendar = _calendar(state, upn)
        return [calendar.put(event).id for event in loaded.events]


def update_event(state: SimState, upn: str, event_id: str, changes: dict[str, Any]) -> None:
    """Change an event, a whole series (its master's id) or one occurrence (an exception)."""
    with state.lock:
        calendar = _calendar(state, upn)
        event, original = _find(calendar, event_id)
        if original is None:
            _update_event(event, changes)
        else:
            exception = event.exceptions.setdefault(original, {})
            exception.update(_exception_changes(changes))
        event.modified = state.clock.iso()


def cancel_occurrence(state: SimState, upn: str, occurrence_id: str) -> None:
    """Cancel one occurrence of a series, as its organiser does in Outlook."""
    with state.lock:
        event, original = _find(_calendar(state, upn), occurrence_id)
        if original is None:
            message = f"{occurrence_id!r} is not an occurrence"
            raise KeyError(message)
        event.cancelled.add(original)
        event.exceptions.pop(original, None)
        event.modified = state.clock.iso()


def cancel_event(state: SimState, upn: str, event_id: str) -> None:
    """Mark a meeting cancelled in an attendee's calendar (it stays, ``isCancelled`` true)."""
    update_event(state, upn, event_id, {"isCancelled": True})


def delete_event(state: SimState, upn: str, event_id: str) -> None:
    """Delete an event or a whole series."""
    with state.lock:
        calendar = _calendar(state, upn)
        event, _ = _find(calendar, event_id)
        del calendar.events[event.id]


def instances(
    state: SimState, upn: str, low: datetime, high: datetime, event_id: str | None = None
) -> list[dict[str, Any]]:
    """Return the calendar's instances in a window (of one event when given), as Graph JSON."""
    with state.lock:
        calendar = _calendar(state, upn)
        behaviour = CalendarBehaviour()
        if event_id is None:
            found = calendar.instances(low, high)
        else:
            event, _ = _find(calendar, event_id)
            found = [i for i in calendar.expand(event, low, high) if i.overlaps(low, high)]
        return [render(item, "UTC", behaviour) for item in found]


def set_behaviour(state: SimState, *, legacy_series: bool, all_day_instants: bool) -> None:
    """Switch the reported Graph behaviours of BR-04 and BR-05 (see ``CalendarBehaviour``)."""
    with state.lock:
        state.calendar_behaviour = CalendarBehaviour(legacy_series, all_day_instants)


def invalidate_sync_state(state: SimState, upn: str) -> None:
    """Make every calendarView delta token of a user answer 410 ``syncStateNotFound``."""
    with state.lock:
        user, _ = state.mailbox(upn)
        state.calendar_syncs[user.oid].invalidate()


def _find(calendar: Calendar, event_id: str) -> tuple[SimEvent, datetime | None]:
    found = calendar.find(event_id)
    if found is None:
        message = f"no event {event_id!r}"
        raise KeyError(message)
    return found


def _update_event(event: SimEvent, changes: dict[str, Any]) -> None:
    data = copy.deepcopy(changes)
    if "start" in data:
        event.start, _ = parse_graph_time(data.pop("start"))
    if "end" in data:
        event.end, _ = parse_graph_time(data.pop("end"))
    if data.get("recurrence"):
        event.graph_recurrence = data.pop("recurrence")
        event.recurrence = rrule_from_graph(event.graph_recurrence, event.start)
    event.data.update(data)


def _exception_changes(changes: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(changes)
    if "start" in data:
        data["_start"] = parse_graph_time(data.pop("start"))[0].astimezone(UTC)
    if "end" in data:
        data["_end"] = parse_graph_time(data.pop("end"))[0].astimezone(UTC)
    return data
