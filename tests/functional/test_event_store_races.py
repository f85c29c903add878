"""A calendar event deleted while a worker saves a copy of it, against Azurite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.sync.eventrows import INDEX, ITEM_TOMBSTONE_PREFIX, ITEMS, TOMBSTONES, KeptEvent
from shared.sync.eventstore import EventDeletedError, EventStore
from shared.sync.eventtimes import EventTimes

if TYPE_CHECKING:
    from devstack.azurite import Azurite


class _HookedTables(TableEntityStore):
    """Table Storage that runs one hook right after the next write to a chosen table."""

    hook: tuple[str, Callable[[], None]] | None = None

    def upsert(self, table: str, entity: Mapping[str, Any], *, replace: bool = False) -> None:
        super().upsert(table, entity, replace=replace)
        if self.hook is not None and self.hook[0] == table:
            _, run = self.hook
            self.hook = None
            run()

    def delete(self, table: str, partition: str, row: str, *, etag: str | None = None) -> None:
        if self.hook is not None and self.hook[0] == "delete " + table:
            _, run = self.hook
            self.hook = None
            run()
        super().delete(table, partition, row, etag=etag)


@pytest.fixture(scope="module")
def store(azurite: Azurite) -> tuple[EventStore, _HookedTables]:
    """An event store on the session's Azurite."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    tables = _HookedTables(service)
    tables.ensure_tables()
    return EventStore(tables), tables


def _copy(item_id: str, uid: str) -> KeptEvent:
    """One calendar's copy of a customer meeting: the same iCalUId and start, its own id."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    return KeptEvent(
        item_id=item_id,
        series_uid=uid,
        anchor=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        kind="singleInstance",
        times=EventTimes(start=start, end=start + timedelta(hours=1), zone="UTC"),
        subject="Renewal",
        organizer={"name": "", "address": "jane@acme.example"},
        attendees=[{"name": "", "address": "ann@vendor.example"}],
        cancelled=False,
        company_ids=frozenset({"acme"}),
    )


def test_an_event_deleted_while_a_copy_is_saved_is_undone_and_stays_deleted(
    store: tuple[EventStore, _HookedTables],
) -> None:
    """A deletion landing mid-save wins: the save is undone, refused, and refused again later."""
    events, tables = store
    # GIVEN Ben's stored copy of a meeting, and Ann's worker about to save her copy
    tenant, uid = str(uuid.uuid4()), f"uid-{uuid.uuid4()}"
    key, _ = events.save(
        tenant_id=tenant, user_id="ben", connection="conn-ben", event=_copy("b1", uid), round_id="r"
    )

    # WHEN Ben deletes the meeting right after Ann's save wrote the event row
    tables.hook = ("events", lambda: events.delete_event(tenant, key))
    with pytest.raises(EventDeletedError) as during:
        events.save(
            tenant_id=tenant,
            user_id="ann",
            connection="conn-ann",
            event=_copy("a1", uid),
            round_id="r",
        )
    with pytest.raises(EventDeletedError) as later:
        events.save(
            tenant_id=tenant,
            user_id="ann",
            connection="conn-ann",
            event=_copy("a1", uid),
            round_id="r",
        )

    # THEN nothing of the meeting is left for either calendar, and both items carry tombstones
    assert "while it was saved" in str(during.value)
    assert "while it was saved" not in str(later.value)
    assert events.get_event(tenant, key) is None
    assert events.holders(tenant, key) == []
    assert events.item("conn-ann", "a1") is None
    assert events.item("conn-ben", "b1") is None
    assert list(tables.list_partition(INDEX, table_key(tenant, "acme"))) == []
    for connection, item_id in (("conn-ann", "a1"), ("conn-ben", "b1")):
        stone = tables.get(TOMBSTONES, ITEM_TOMBSTONE_PREFIX + connection, table_key(item_id))
        assert stone is not None
        assert stone["eventKey"] == key
    assert events.is_deleted(tenant, key)
    assert list(tables.list_partition(ITEMS, "conn-ann")) == []


class _StoppedError(Exception):
    """The worker stopped part way through an unlink."""


def _stop() -> None:
    raise _StoppedError


@pytest.mark.parametrize("stopped_at", ["eventholders", "events"])
def test_an_unlink_stopped_part_way_is_finished_by_the_next(
    store: tuple[EventStore, _HookedTables], stopped_at: str
) -> None:
    """An unlink that stops before deleting the holder or the event leaves the item to retry."""
    events, tables = store
    # GIVEN Ann's stored copy of a meeting no one else holds
    tenant, uid, calendar = str(uuid.uuid4()), f"uid-{uuid.uuid4()}", f"conn-{uuid.uuid4()}"
    key, _ = events.save(
        tenant_id=tenant, user_id="ann", connection=calendar, event=_copy("a1", uid), round_id="r"
    )

    # WHEN her unlink stops just before one of its deletes, then runs again
    tables.hook = ("delete " + stopped_at, _stop)
    with pytest.raises(_StoppedError):
        events.unlink(tenant_id=tenant, user_id="ann", connection=calendar, item_id="a1")
    assert events.item(calendar, "a1") is not None
    again = events.unlink(tenant_id=tenant, user_id="ann", connection=calendar, item_id="a1")

    # THEN the second finishes it: no item, holder, event or index row is left
    assert again is True
    assert events.item(calendar, "a1") is None
    assert events.holders(tenant, key) == []
    assert events.get_event(tenant, key) is None
    assert list(tables.list_partition(INDEX, table_key(tenant, "acme"))) == []
