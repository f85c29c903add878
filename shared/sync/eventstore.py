"""Where kept calendar events live: one record per meeting occurrence in a tenant, its holders.

:class:`EventStore` writes the rows laid out in :mod:`shared.sync.eventrows` (events, holders,
calendar items, series, the company index and tombstones) and reads them back for sync, the
read API and the power tools. Table Storage has no transaction across tables, so the writes
keep an order: a save checks the event's tombstones before and after its writes and undoes
them when a deletion landed in between; a deletion writes its tombstones first, so repeating it
after a crash finishes the job; a purge batch deletes the item row it walks last, so a purge
killed in between finds it again. A purge releases only events created before its watermark
(each calendar item keeps ``createdAt``) and walks past the others.

Known limitations: a calendar item stored before items kept ``createdAt`` counts as created
before any purge, so a purge releases it even when the meeting is newer than the request.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.errors import SyncError
from shared.sync.eventrows import (
    EVENTS,
    HOLDERS,
    INDEX,
    ITEM_TOMBSTONE_PREFIX,
    ITEMS,
    MAX_ATTENDEES,
    SERIES,
    SUBJECT_CHARS,
    TOMBSTONES,
    KeptEvent,
    companies_of,
    event_key,
    event_partition,
    event_row,
    index_row_key,
    stamp,
    summary_row,
)
from shared.sync.jobs import instant

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from shared.adapters.tables import Entity, TableEntityStore


class EventDeletedError(SyncError):
    """Raised when an event to save was deleted in the product: it must not come back."""


class EventStore:
    """Writes kept events and reads them back for the API."""

    def __init__(self, tables: TableEntityStore) -> None:
        self._tables = tables

    def save(
        self, *, tenant_id: str, user_id: str, connection: str, event: KeptEvent, round_id: str
    ) -> tuple[str, bool]:
        """Store a kept event, link it to its holder and companies; return its key and if new.

        An event deleted through the power tools is refused, also when the deletion lands while
        this save runs: the tombstone is checked again after the writes, which are then undone.

        Raises:
            EventDeletedError: when the event or this calendar item carries a tombstone.
        """
        organizer = str(event.organizer.get("address") or "")
        key = event_key(
            tenant_id,
            event.series_uid,
            event.anchor,
            connection,
            event.item_id,
            organizer=organizer,
        )
        if self._tombstoned(tenant_id, key) or self._item_tombstoned(connection, event.item_id):
            msg = f"event {key} was deleted in the product"
            raise EventDeletedError(msg)
        partition = event_partition(tenant_id, key)
        existing = self._tables.get(EVENTS, partition, key)
        old_companies = companies_of(existing)
        companies = event.company_ids | old_companies
        row = event_row(tenant_id, key, event, companies)
        self._tables.upsert(EVENTS, row, replace=True)
        if existing is not None and existing.get("sortTime") != row["sortTime"]:
            self._drop_index(tenant_id, key, str(existing["sortTime"]), old_companies)
        summary = summary_row(key, row)
        for company_id in sorted(companies):
            index = {"PartitionKey": table_key(tenant_id, company_id)}
            index["RowKey"] = index_row_key(str(row["sortTime"]), key)
            self._tables.upsert(INDEX, {**index, **summary})
        self._link(
            tenant_id=tenant_id,
            user_id=user_id,
            connection=connection,
            key=key,
            event=event,
            round_id=round_id,
        )
        if self._tombstoned(tenant_id, key):
            self.delete_event(tenant_id, key)
            # The deletion may have found no event row left to read the index rows from.
            self._drop_index(tenant_id, key, str(row["sortTime"]), companies)
            msg = f"event {key} was deleted in the product while it was saved"
            raise EventDeletedError(msg)
        return key, existing is None

    def delete_event(self, tenant_id: str, key: str) -> int:
        """Delete an event for the whole tenant and keep it from syncing back; return holders.

        Tombstones go first (for the event and for every calendar item of every holder that
        points at it), then the event with its company index rows, then the holders' links.
        Repeating it after a crash finishes the job.
        """
        holders = self.holders(tenant_id, key)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        stone = {"PartitionKey": event_partition(tenant_id, key), "RowKey": key, "deletedAt": now}
        self._tables.upsert(TOMBSTONES, stone)
        links: list[tuple[str, str]] = []
        for holder in holders:
            connection = str(holder["connection"])
            item_ids = {str(holder["itemId"])}
            item_ids.update(str(row["itemId"]) for row in self.items_for_key(connection, key))
            links.extend((connection, item_id) for item_id in sorted(item_ids))
        for connection, item_id in links:
            item = {
                "PartitionKey": ITEM_TOMBSTONE_PREFIX + connection,
                "RowKey": table_key(item_id),
                "eventKey": key,
                "deletedAt": now,
            }
            self._tables.upsert(TOMBSTONES, item)
        self._delete_event(tenant_id, key)
        for connection, item_id in links:
            self._tables.delete(ITEMS, connection, table_key(item_id))
        for holder in holders:
            self._tables.delete(HOLDERS, event_partition(tenant_id, key), str(holder["RowKey"]))
        return len(holders)

    def is_deleted(self, tenant_id: str, key: str) -> bool:
        """Tell whether an event was deleted in the product."""
        return self._tombstoned(tenant_id, key)

    def _tombstoned(self, tenant_id: str, key: str) -> bool:
        return self._tables.get(TOMBSTONES, event_partition(tenant_id, key), key) is not None

    def _item_tombstoned(self, connection: str, item_id: str) -> bool:
        partition = ITEM_TOMBSTONE_PREFIX + connection
        return self._tables.get(TOMBSTONES, partition, table_key(item_id)) is not None

    def _link(
        self,
        *,
        tenant_id: str,
        user_id: str,
        connection: str,
        key: str,
        event: KeptEvent,
        round_id: str,
    ) -> None:
        holder = {
            "PartitionKey": event_partition(tenant_id, key),
            "RowKey": table_key(key, user_id),
            "eventKey": key,
            "userId": user_id,
            "connection": connection,
            "itemId": event.item_id,
        }
        self._tables.upsert(HOLDERS, holder)
        item = {
            "PartitionKey": connection,
            "RowKey": table_key(event.item_id),
            "itemId": event.item_id,
            "eventKey": key,
            "start": stamp(event.times.start),
            "seriesMasterId": event.series_master_id,
            "roundId": round_id,
            "createdAt": event.created_at,
        }
        self._tables.upsert(ITEMS, item)

    def touch(self, connection: str, item_id: str, round_id: str) -> None:
        """Record that a full round saw a stored item again, though nothing else changed."""
        row = {"PartitionKey": connection, "RowKey": table_key(item_id), "roundId": round_id}
        self._tables.upsert(ITEMS, row)

    def items(self, connection: str) -> Iterator[Entity]:
        """Yield every stored item of a calendar connection."""
        return self._tables.list_partition(ITEMS, connection)

    def item(self, connection: str, item_id: str) -> Entity | None:
        """Return what a calendar item was stored as (event key, start, series), or ``None``."""
        return self._tables.get(ITEMS, connection, table_key(item_id))

    def series_items(self, connection: str, master_id: str) -> list[Entity]:
        """Return a calendar's stored occurrences and exceptions of one series."""
        where = "PartitionKey eq @pk and seriesMasterId eq @master"
        return list(self._tables.query(ITEMS, where, {"pk": connection, "master": master_id}))

    def unlink(self, *, tenant_id: str, user_id: str, connection: str, item_id: str) -> bool:
        """Forget that a calendar held an event; delete the event when no holder is left.

        The item row goes last, so an unlink stopped part way (a crash, a storage failure) is
        finished by the next one, which still finds the item.

        Returns:
            True when the calendar held the item (it is gone from the calendar now).
        """
        item = self.item(connection, item_id)
        if item is None:
            return False
        key = str(item["eventKey"])
        others = [
            row for row in self.items_for_key(connection, key) if str(row.get("itemId")) != item_id
        ]
        if not others:
            self._tables.delete(HOLDERS, event_partition(tenant_id, key), table_key(key, user_id))
            if not self.holders(tenant_id, key):
                self._delete_event(tenant_id, key)
        self._tables.delete(ITEMS, connection, table_key(item_id))
        return True

    def items_for_key(self, connection: str, key: str) -> list[Entity]:
        """Return a connection's items that point at one event."""
        where = "PartitionKey eq @pk and eventKey eq @key"
        return list(self._tables.query(ITEMS, where, {"pk": connection, "key": key}))

    def purge_connection(self, *, tenant_id: str, user_id: str, connection: str) -> int:
        """Unlink every event a calendar connection synced; return how many items went.

        Events other users also hold stay, without this user as holder. Safe to repeat.
        """
        item_ids = [str(row.get("itemId") or "") for row in self.items(connection)]
        for item_id in item_ids:
            self.unlink(
                tenant_id=tenant_id, user_id=user_id, connection=connection, item_id=item_id
            )
        for row in list(self._tables.list_partition(SERIES, connection)):
            self._tables.delete(SERIES, connection, str(row["RowKey"]))
        return len(item_ids)

    def release_batch(
        self,
        *,
        tenant_id: str,
        user_id: str,
        connection: str,
        size: int,
        before: datetime,
        after: str = "",
    ) -> tuple[dict[str, int], str | None]:
        """Take out, for a purge, the calendar's events created before ``before``, in batches.

        The batch walks up to ``size`` of the calendar's items in key order past ``after``;
        events created at ``before`` or later stay, as sync keeps them after a purge. An event
        goes when no other user holds it, else only this holder goes; the item row is deleted
        last, so a purge killed in between finds it again. Once the walk ends, the calendar's
        stored series go too, unless a kept item still belongs to one.

        Returns:
            How many events went and how many stayed for other holders, and the last key
            walked, or None when no item was left past ``after``.
        """
        where = "PartitionKey eq @pk and RowKey gt @after"
        rows, _ = self._tables.head(ITEMS, where, {"pk": connection, "after": after}, size=size)
        if not rows:
            self._release_series(connection)
            return {}, None
        counts: Counter[str] = Counter()
        for row in rows:
            if instant(row.get("createdAt")) >= before:
                continue
            released = self._release_item(tenant_id, user_id, connection, row)
            if released:
                counts[released] += 1
        return dict(counts), str(rows[-1]["RowKey"])

    def _release_item(self, tenant_id: str, user_id: str, connection: str, row: Entity) -> str:
        """Release one calendar item; return what happened to its event, or "" when uncounted."""
        key = str(row["eventKey"])
        mine = [r for r in self.items_for_key(connection, key) if r["RowKey"] != row["RowKey"]]
        others = [h for h in self.holders(tenant_id, key) if h.get("userId") != user_id]
        if not others and not mine:
            self._delete_event(tenant_id, key)
        if not mine:
            partition = event_partition(tenant_id, key)
            self._tables.delete(HOLDERS, partition, table_key(key, user_id))
        self._tables.delete(ITEMS, connection, str(row["RowKey"]))
        if mine:
            return ""
        # Counted with the calendar's last item of the event, not once per item.
        return "keptShared" if others else "removed"

    def _release_series(self, connection: str) -> None:
        """Delete the calendar's stored series that no item left after a purge belongs to."""
        kept = {str(row.get("seriesMasterId") or "") for row in self.items(connection)}
        for series in list(self._tables.list_partition(SERIES, connection)):
            if str(series["RowKey"]) not in {table_key(master) for master in kept if master}:
                self._tables.delete(SERIES, connection, str(series["RowKey"]))

    def holders(self, tenant_id: str, key: str) -> list[Entity]:
        """Return the holder rows of one event."""
        where = "PartitionKey eq @pk and eventKey eq @key"
        return list(
            self._tables.query(HOLDERS, where, {"pk": event_partition(tenant_id, key), "key": key})
        )

    def series(self, connection: str, master_id: str) -> Entity | None:
        """Return what is stored about a series master of a calendar, or ``None``."""
        return self._tables.get(SERIES, connection, table_key(master_id))

    def save_series(self, connection: str, master_id: str, master: Mapping[str, Any]) -> Entity:
        """Store what a series master says; return the stored row."""
        row: Entity = {
            "PartitionKey": connection,
            "RowKey": table_key(master_id),
            "masterId": master_id,
            "iCalUId": str(master.get("iCalUId") or ""),
            "subject": str(master.get("subject") or "")[:SUBJECT_CHARS],
            "organizer": json.dumps(master.get("organizer") or {}),
            "attendees": json.dumps((master.get("attendees") or [])[:MAX_ATTENDEES]),
            "isCancelled": bool(master.get("isCancelled")),
            "isAllDay": bool(master.get("isAllDay")),
            "originalStartTimeZone": str(master.get("originalStartTimeZone") or "")[:256],
            "location": json.dumps(master.get("location") or {})[:SUBJECT_CHARS],
            "createdDateTime": str(master.get("createdDateTime") or ""),
        }
        self._tables.upsert(SERIES, row, replace=True)
        return row

    def company_page(
        self, tenant_id: str, company_id: str, *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of a company's event summaries, latest start first."""
        where = "PartitionKey eq @pk"
        return self._tables.page(
            INDEX, where, {"pk": table_key(tenant_id, company_id)}, size=size, token=token
        )

    def get_event(self, tenant_id: str, key: str) -> Entity | None:
        """Return a stored event, or ``None`` (also for a malformed key)."""
        if len(key) != 64 or any(ch not in "0123456789abcdef" for ch in key):
            return None
        return self._tables.get(EVENTS, event_partition(tenant_id, key), key)

    def _drop_index(
        self, tenant_id: str, key: str, sort_time: str, companies: frozenset[str]
    ) -> None:
        for company_id in companies:
            index_key = index_row_key(sort_time, key)
            self._tables.delete(INDEX, table_key(tenant_id, company_id), index_key)

    def _delete_event(self, tenant_id: str, key: str) -> None:
        partition = event_partition(tenant_id, key)
        row = self._tables.get(EVENTS, partition, key)
        if row is None:
            return
        self._drop_index(tenant_id, key, str(row["sortTime"]), companies_of(row))
        self._tables.delete(EVENTS, partition, key)
