"""A calendar sync job as it travels on the queue, what one job works with, and what it did.

A job is ``{"kind": "calendar", "tenant", "user", "slot"?}`` (see
:class:`shared.sync.jobs.ConnectionJob`); it carries nothing of its own, since the round it
continues is recorded in the calendar's cursor row. While it walks a calendar's delta pages the
job keeps a :class:`CalendarRound`: the connection, the window and round it belongs to, the
compiled rules, the series it touched and the drops not yet recorded. :class:`CalendarStats` is
what the job saw and did, recorded as the connection's last round.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from shared.sync.connections import CALENDAR
from shared.sync.jobs import ConnectionJob

if TYPE_CHECKING:
    from datetime import datetime

    from shared.adapters.tables import Entity
    from shared.matching.companies import CompanyIndex
    from shared.rules.engine import CompiledRules
    from shared.rules.store import Drop
    from shared.sync.connections import Connection


@dataclass(slots=True)
class CalendarStats:
    """What one calendar job saw and did; recorded as the connection's last round."""

    seen: int = 0
    kept: int = 0
    stored_new: int = 0
    removed_seen: int = 0
    unlinked: int = 0
    series_reconciled: int = 0
    pages: int = 0
    full_round: bool = False
    dropped: Counter[str] = field(default_factory=Counter)
    complete: bool = True

    def as_record(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        return {
            "seen": self.seen,
            "kept": self.kept,
            "storedNew": self.stored_new,
            "removedSeen": self.removed_seen,
            "unlinked": self.unlinked,
            "seriesReconciled": self.series_reconciled,
            "pages": self.pages,
            "fullRound": self.full_round,
            "dropped": dict(self.dropped),
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True)
class CalendarJob(ConnectionJob):
    """A calendar sync job as it travels on the queue."""

    KIND: ClassVar[str] = CALENDAR


@dataclass(slots=True)
class CalendarRound:
    """What one job works with while it walks a calendar's delta pages."""

    connection: Connection
    token: str
    index: CompanyIndex
    window: tuple[datetime, datetime]
    round_id: str
    full: bool
    resume: str | None
    cursor: Entity | None
    rules: CompiledRules
    touched: set[str] = field(default_factory=set)
    drops: list[Drop] = field(default_factory=list)
    stats: CalendarStats = field(default_factory=CalendarStats)
