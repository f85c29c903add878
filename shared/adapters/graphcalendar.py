"""Microsoft Graph adapter for the primary calendar: calendarView delta, series, new events.

Every request asks for immutable ids and for times in UTC (``Prefer: outlook.timezone="UTC"``);
the product stores UTC instants with the event's original zone name. The calendarView window
(``startDateTime``/``endDateTime``) is given on a round's first request only: Graph encodes it in
the state tokens, so ``nextLink`` and ``deltaLink`` are followed as they are, and a different
window needs a new first request. Transport, throttling and error translation are those of
:class:`shared.adapters.graph.GraphMailClient`.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.adapters.graph import DeltaPage

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from datetime import datetime

    from shared.adapters.graph import GraphMailClient

UTC_ZONE = 'outlook.timezone="UTC"'


class GraphCalendarClient:
    """Calls Graph v1.0 calendar endpoints on behalf of one user at a time."""

    def __init__(self, transport: GraphMailClient) -> None:
        self._graph = transport
        self._base = transport.base_url

    def delta_pages(
        self, token: str, *, resume_url: str | None, window: tuple[datetime, datetime]
    ) -> Iterator[DeltaPage]:
        """Yield the pages of a calendarView delta round, from a stored link or a new window.

        Raises:
            DeltaCursorExpiredError: when Graph no longer knows the link.
        """
        url: str | None = resume_url or self._initial_url(window)
        prefer = (UTC_ZONE, f"odata.maxpagesize={self._graph.page_size}")
        while url:
            body = self._graph.call("GET", url, token, prefer=prefer)
            page = DeltaPage.of(body)
            yield page
            url = page.next_link

    def get_event(self, token: str, event_id: str) -> dict[str, Any]:
        """Return one event (a series master, single event or occurrence) by immutable id.

        Raises:
            NotFoundError: when the event is not in the calendar.
        """
        url = f"{self._base}/me/events/{quote(event_id, safe='')}"
        return self._graph.call("GET", url, token, prefer=(UTC_ZONE,))

    def instances(
        self, token: str, master_id: str, window: tuple[datetime, datetime]
    ) -> list[dict[str, Any]]:
        """Return every occurrence and exception of a series inside the window.

        Raises:
            NotFoundError: when the series is gone.
        """
        url: str | None = (
            f"{self._base}/me/events/{quote(master_id, safe='')}/instances?{_window(window)}"
        )
        found: list[dict[str, Any]] = []
        while url:
            body = self._graph.call("GET", url, token, prefer=(UTC_ZONE,))
            found.extend(body.get("value") or [])
            url = body.get("@odata.nextLink")
        return found

    def create_event(self, token: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """Create an event in the primary calendar; Graph invites its attendees."""
        return self._graph.call(
            "POST", f"{self._base}/me/events", token, prefer=(UTC_ZONE,), body=event
        )

    def _initial_url(self, window: tuple[datetime, datetime]) -> str:
        return f"{self._base}/me/calendarView/delta?{_window(window)}"


def _window(window: tuple[datetime, datetime]) -> str:
    start, end = (moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for moment in window)
    return f"startDateTime={start}&endDateTime={end}"
