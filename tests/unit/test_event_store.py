"""The event store's purge counts, on an in-memory table stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.sync.eventrows import EVENTS, HOLDERS, ITEMS, KeptEvent
from shared.sync.eventstore import EventStore
from shared.sync.eventtimes import EventTimes
from tests.unit.fakes import FakeTables

TENANT = "tenant-1"
START = datetime(2027, 3, 1, 9, tzinfo=UTC)
PURGED = datetime(2026, 12, 4, 12, tzinfo=UTC)
"""When the calendar's purge was asked for; the events above are all created before it."""


def _item(
    item_id: str, uid: str = "uid-1", created_at: str = "2026-01-05T08:00:00+00:00"
) -> KeptEvent:
    """One calendar item of a customer meeting."""
    return KeptEvent(
        item_id=item_id,
        series_uid=uid,
        anchor=START.strftime("%Y-%m-%dT%H:%M:%SZ"),
        kind="singleInstance",
        times=EventTimes(start=START, end=START + timedelta(hours=1), zone="UTC"),
        subject="Renewal",
        organizer={"name": "", "address": "jane@acme.example"},
        attendees=[{"name": "", "address": "ann@vendor.example"}],
        cancelled=False,
        company_ids=frozenset({"acme"}),
        created_at=created_at,
    )


def _purge(events: EventStore, user: str, calendar: str, batch: int) -> dict[str, int]:
    """Release a calendar's items batch by batch until none is left; return the summed counts."""
    totals: dict[str, int] = {}
    walked: str | None = ""
    while walked is not None:
        counts, walked = events.release_batch(
            tenant_id=TENANT,
            user_id=user,
            connection=calendar,
            size=batch,
            before=PURGED,
            after=walked,
        )
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
    return totals


@pytest.mark.parametrize("batch", [1, 10])
def test_purging_one_meeting_held_by_two_items_of_a_calendar_counts_it_once(batch: int) -> None:
    """Two items of Ann's calendar point at one meeting: the purge counts it removed once."""
    # GIVEN Ann's calendar holding one meeting through two items, and another meeting
    tables = FakeTables()
    events = EventStore(tables)  # type: ignore[arg-type]
    for item_id, uid in (("a1", "uid-1"), ("a2", "uid-1"), ("a3", "uid-2")):
        events.save(
            tenant_id=TENANT,
            user_id="ann",
            connection="cal-ann",
            event=_item(item_id, uid),
            round_id="r",
        )
    assert len(tables.rows(EVENTS)) == 2

    # WHEN her calendar is purged
    totals = _purge(events, "ann", "cal-ann", batch)

    # THEN both meetings, her holder rows and the three items are gone, each meeting counted once
    assert totals == {"removed": 2}
    assert tables.rows(EVENTS) == []
    assert tables.rows(HOLDERS) == []
    assert tables.rows(ITEMS) == []


def test_purging_a_meeting_another_user_holds_keeps_it_and_counts_it_once() -> None:
    """Ben holds the meeting too: Ann's two items count it kept as shared, once."""
    # GIVEN the meeting in Ben's calendar and twice in Ann's
    tables = FakeTables()
    events = EventStore(tables)  # type: ignore[arg-type]
    events.save(
        tenant_id=TENANT, user_id="ben", connection="cal-ben", event=_item("b1"), round_id="r"
    )
    for item_id in ("a1", "a2"):
        events.save(
            tenant_id=TENANT,
            user_id="ann",
            connection="cal-ann",
            event=_item(item_id),
            round_id="r",
        )

    # WHEN Ann's calendar is purged one item at a time
    totals = _purge(events, "ann", "cal-ann", 1)

    # THEN the meeting stays for Ben alone, counted once as kept
    assert totals == {"keptShared": 1}
    assert len(tables.rows(EVENTS)) == 1
    assert [row["userId"] for row in tables.rows(HOLDERS)] == ["ben"]


@pytest.mark.parametrize("batch", [1, 2, 10])
def test_purging_keeps_events_created_after_the_purge_was_asked_for(batch: int) -> None:
    """Events that came into the calendar after the watermark stay, and the walk still ends."""
    # GIVEN Ann's calendar with one meeting from before the purge and three from after it
    tables = FakeTables()
    events = EventStore(tables)  # type: ignore[arg-type]
    after = (PURGED + timedelta(seconds=1)).isoformat(timespec="seconds")
    new = [_item(f"n{i}", uid=f"uid-n{i}", created_at=after) for i in range(3)]
    for event in [_item("a1"), *new]:
        events.save(
            tenant_id=TENANT, user_id="ann", connection="cal-ann", event=event, round_id="r"
        )

    # WHEN her calendar is purged in batches of the given size
    totals = _purge(events, "ann", "cal-ann", batch)

    # THEN only the old meeting went; the three new ones keep their rows
    assert totals == {"removed": 1}
    assert sorted(row["itemId"] for row in tables.rows(ITEMS)) == ["n0", "n1", "n2"]
    assert len(tables.rows(EVENTS)) == 3
