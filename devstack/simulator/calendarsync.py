"""calendarView delta for the simulated calendar: rounds over a window fixed by the first request.

The first request names ``startDateTime`` and ``endDateTime``; they, the ``outlook.timezone``
preference and the behaviour in force are kept in the round's state, as Graph encodes them in
its state tokens, so later requests just follow ``nextLink`` and ``deltaLink``. A round compares
the calendar view now with the snapshot of what the client was told at the end of the previous
round: new and changed items come back whole; items that left the view (deleted, or moved out of
the window) come back as ``@removed``, except an occurrence of a live series under the legacy
behaviour, which vanishes silently (BR-04). State lives in the calendar and is referenced by an
opaque token id; :meth:`CalendarSync.invalidate` forgets it, so old tokens answer 410.

Known limitations: state of finished rounds is never evicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devstack.simulator import ids
from devstack.simulator.calendar import fingerprint, render, render_master

if TYPE_CHECKING:
    from datetime import datetime

    from devstack.simulator.calendar import Calendar, CalendarBehaviour


@dataclass(slots=True)
class Snapshot:
    """What a client was told: item id to (fingerprint, series master id or None)."""

    items: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass(slots=True)
class Round:
    """A delta round: its window and options, the items still to page, the snapshot at its end."""

    owner: str
    low: datetime
    high: datetime
    zone_name: str
    behaviour: CalendarBehaviour
    generation: int
    pending: list[dict[str, Any]]
    snapshot: Snapshot


class TokenError(LookupError):
    """Raised when a token is unknown or belongs to another user."""


class ExpiredError(LookupError):
    """Raised when a token's sync state was forgotten (``syncStateNotFound``)."""


class CalendarSync:
    """Delta rounds of one calendar; the caller holds the simulator lock."""

    def __init__(self, calendar: Calendar) -> None:
        self._calendar = calendar
        self._rounds: dict[str, Round] = {}
        self._generation = 0

    def invalidate(self) -> None:
        """Forget every token handed out so far."""
        self._generation += 1
        self._rounds.clear()

    def start(
        self,
        owner: str,
        window: tuple[datetime, datetime],
        zone_name: str,
        behaviour: CalendarBehaviour,
    ) -> str:
        """Begin an initial round over a window; return its token id."""
        low, high = window
        view = self.view(low, high, zone_name, behaviour)
        first = Round(owner, low, high, zone_name, behaviour, self._generation, [], Snapshot())
        return self._begin(first, view)

    def follow(self, owner: str, token: str, behaviour: CalendarBehaviour) -> str:
        """Begin the next round after a finished one (a ``$deltatoken``); return its token id.

        The behaviour in force now applies, so a test can switch it between rounds.

        Raises:
            TokenError: when the token is unknown or someone else's.
            ExpiredError: when its state was forgotten.
        """
        previous = self.get(owner, token)
        previous.behaviour = behaviour
        view = self.view(previous.low, previous.high, previous.zone_name, behaviour)
        return self._begin(previous, view)

    def get(self, owner: str, token: str) -> Round:
        """Return the round a token names.

        Raises:
            TokenError: when the token is unknown or someone else's.
            ExpiredError: when its state was forgotten.
        """
        found = self._rounds.get(token)
        if found is None:
            generation, _, _ = token.partition(".")
            if generation.isdigit() and int(generation) < self._generation:
                raise ExpiredError(token[:12])
            raise TokenError(token[:12])
        if found.owner != owner:
            raise TokenError(token[:12])
        return found

    def page(self, owner: str, token: str, size: int) -> tuple[list[dict[str, Any]], str | None]:
        """Take up to ``size`` items of a round; return them and the next token, if more remain."""
        current = self.get(owner, token)
        chunk, rest = current.pending[:size], current.pending[size:]
        if not rest:
            current.pending = []
            return chunk, None
        following = Round(**{**_fields(current), "pending": rest})
        return chunk, self._store(following)

    def view(
        self, low: datetime, high: datetime, zone_name: str, behaviour: CalendarBehaviour
    ) -> dict[str, tuple[dict[str, Any], str | None]]:
        """Return the calendar view as item id to (rendered JSON, series master id or None)."""
        found: dict[str, tuple[dict[str, Any], str | None]] = {}
        for item in self._calendar.instances(low, high):
            master = item.event.id if item.kind != "singleInstance" else None
            if master is not None and behaviour.legacy_series and master not in found:
                found[master] = (render_master(item.event, zone_name, behaviour), None)
            bare = behaviour.legacy_series and item.kind == "occurrence"
            found[item.id] = (render(item, zone_name, behaviour, bare=bare), master)
        return found

    def _begin(self, previous: Round, view: dict[str, tuple[dict[str, Any], str | None]]) -> str:
        told = previous.snapshot.items
        changes = [body for key, (body, _) in view.items() if told.get(key, ("",))[0] != _fp(body)]
        for key, (_, master) in told.items():
            if key in view:
                continue
            silent = previous.behaviour.legacy_series and master in self._calendar.events
            if not silent:
                changes.append(_removed(key))
        snapshot = Snapshot({key: (_fp(body), master) for key, (body, master) in view.items()})
        following = Round(**{**_fields(previous), "pending": changes, "snapshot": snapshot})
        following.generation = self._generation
        return self._store(following)

    def _store(self, state: Round) -> str:
        token = f"{self._generation}.{ids.opaque_token(24)}"
        self._rounds[token] = state
        return token


def _fp(body: dict[str, Any]) -> str:
    return fingerprint(body)


def _fields(state: Round) -> dict[str, Any]:
    return {name: getattr(state, name) for name in Round.__dataclass_fields__}


def _removed(item_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.event",
        "id": item_id,
        "@removed": {"reason": "deleted"},
    }
