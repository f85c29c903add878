"""Who holds a kept email, and how an email leaves the product: unlinking, purging, deleting.

Each user's copy of an email is linked to the tenant's email by a holder row (``emailholders``)
and a mailbox item (``mailboxitems``). Taking a copy away removes those links and, when no other
user holds the email, the email itself with its index rows and blobs. Removals go in a crash-safe
order, the email before the links that lead to it, so repeating an interrupted one finishes it;
a purge's release deletes the mailbox item, which the purge walks, last of all. A purge releases
only the items received before its watermark (each item keeps ``receivedAt``); an item stored
before items kept that time is judged by its email's received time, which another holder may
have set.

Deleting an email in the product writes its tombstones first, one for the email and one for each
holder's mailbox item, so no later sync stores it again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.sync.emailrows import (
    BLOB_SUFFIX,
    EMAILS,
    HOLDERS,
    INBOX,
    INDEX,
    ITEM_TOMBSTONE_PREFIX,
    ITEMS,
    OVERFLOW_FIELDS,
    TOMBSTONES,
    EmailRows,
    email_partition,
    inbox_partition,
    index_row_key,
)
from shared.sync.jobs import instant

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.adapters.tables import Entity


class Release(StrEnum):
    """What releasing one mailbox item did to its email."""

    REMOVED = "removed"
    """The mailbox was the email's last holder: the email is gone."""
    KEPT_SHARED = "keptShared"
    """Another user holds the email too: it stays, without this holder."""


class EmailLinks(EmailRows):
    """Links kept emails to their holders and mailbox items, and takes them out again."""

    def delete_email(self, tenant_id: str, key: str) -> int:
        """Delete an email for the whole tenant and keep it from syncing back; return holders.

        Tombstones go first (for the email and for every mailbox item holding it), then the
        email with its indexes and blobs, then the holders' links. Repeating it after a crash
        finishes the job.
        """
        holders = self.holders(tenant_id, key)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        stone = {"PartitionKey": email_partition(tenant_id, key), "RowKey": key, "deletedAt": now}
        self._tables.upsert(TOMBSTONES, stone)
        for holder in holders:
            item = {
                "PartitionKey": ITEM_TOMBSTONE_PREFIX + str(holder["connection"]),
                "RowKey": table_key(str(holder["itemId"])),
                "emailKey": key,
                "deletedAt": now,
            }
            self._tables.upsert(TOMBSTONES, item)
        self._delete_email(tenant_id, key)
        for holder in holders:
            self._tables.delete(ITEMS, str(holder["connection"]), table_key(str(holder["itemId"])))
            self._tables.delete(HOLDERS, email_partition(tenant_id, key), str(holder["RowKey"]))
        return len(holders)

    def is_deleted(self, tenant_id: str, key: str) -> bool:
        """Tell whether an email was deleted in the product."""
        return self._tombstoned(tenant_id, key)

    def _tombstoned(self, tenant_id: str, key: str) -> bool:
        return self._tables.get(TOMBSTONES, email_partition(tenant_id, key), key) is not None

    def deleted_items(self, connection: str, item_ids: Sequence[str]) -> set[str]:
        """Return which of a mailbox's items carry a tombstone, with one partition query."""
        if not item_ids:
            return set()
        wanted = {table_key(item_id): item_id for item_id in item_ids}
        rows = self._tables.list_partition(TOMBSTONES, ITEM_TOMBSTONE_PREFIX + connection)
        return {wanted[str(row["RowKey"])] for row in rows if str(row["RowKey"]) in wanted}

    def mailbox_items(self, connection: str, *, size: int) -> list[Entity]:
        """Return up to ``size`` of the items a mailbox still links to stored emails."""
        rows, _ = self._tables.head(ITEMS, "PartitionKey eq @pk", {"pk": connection}, size=size)
        return rows

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
        """Take out, for a purge, what the mailbox received before ``before``, a batch at a time.

        The batch walks up to ``size`` of the mailbox's items in key order, past ``after`` (the
        last key the previous batch walked). Items received at ``before`` or later stay, so mail
        a sync stored after the purge was asked for is kept, and the walk still ends.

        Returns:
            How many emails went and how many stayed for other holders, and the last key walked,
            or None when no item was left past ``after`` (the purge is done).
        """
        where = "PartitionKey eq @pk and RowKey gt @after"
        items, _ = self._tables.head(ITEMS, where, {"pk": connection, "after": after}, size=size)
        if not items:
            return {}, None
        due = [item for item in items if self._received(tenant_id, item) < before]
        counts = self._release_items(tenant_id, user_id, connection, due, before)
        return counts, str(items[-1]["RowKey"])

    def _release_items(
        self,
        tenant_id: str,
        user_id: str,
        connection: str,
        items: Sequence[Entity],
        before: datetime,
    ) -> dict[str, int]:
        """Release a batch of a mailbox's items; return how many emails went and stayed."""
        counts: Counter[str] = Counter()
        doomed: list[str] = []
        holder_keys: list[tuple[str, str]] = []
        for key in dict.fromkeys(str(item["emailKey"]) for item in items):
            holders = self.holders(tenant_id, key)
            if not any(h.get("userId") == user_id for h in holders):
                # Another item of this mailbox (the same email in a second folder) released
                # it in an earlier batch: only this item row is left to delete, and no count.
                continue
            if self._kept_elsewhere(tenant_id, connection, key, before):
                # A copy in another folder came after the purge: the mailbox keeps the email.
                continue
            others = [h for h in holders if h.get("userId") != user_id]
            if not others:
                doomed.append(key)
            holder_keys.append((email_partition(tenant_id, key), table_key(key, user_id)))
            counts[str(Release.KEPT_SHARED if others else Release.REMOVED)] += 1
        # The same order as one item's release, a step at a time for the whole batch: the
        # emails no one else holds, then this user's holder rows, then the item rows last.
        self._delete_emails(tenant_id, doomed)
        self._tables.delete_batch(HOLDERS, holder_keys)
        self._tables.delete_batch(ITEMS, [(connection, str(item["RowKey"])) for item in items])
        return dict(counts)

    def _kept_elsewhere(self, tenant_id: str, connection: str, key: str, before: datetime) -> bool:
        """Tell whether an item of the mailbox received at ``before`` or later holds the email."""
        where = "PartitionKey eq @pk and emailKey eq @key"
        rows = self._tables.query(ITEMS, where, {"pk": connection, "key": key})
        return any(self._received(tenant_id, row) >= before for row in rows)

    def _received(self, tenant_id: str, item: Entity) -> datetime:
        """Return when the mailbox received an item's mail.

        An item stored before items kept this falls back to its email's time, which another
        holder may have set; an email already gone reads as the epoch, so it is released.
        """
        if item.get("receivedAt"):
            return instant(item["receivedAt"])
        key = str(item["emailKey"])
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key) or {}
        return instant(row.get("receivedDateTime"))

    def _release(self, tenant_id: str, user_id: str, connection: str, item: Entity) -> Release:
        """Take one mailbox item out of the product.

        The email goes when no other user holds it; otherwise only this holder goes. The item
        row, which a purge walks, is deleted last, so a purge killed anywhere in between finds
        the item again and finishes it.
        """
        key = str(item["emailKey"])
        others = [h for h in self.holders(tenant_id, key) if h.get("userId") != user_id]
        if not others:
            self._delete_email(tenant_id, key)
        self._tables.delete(HOLDERS, email_partition(tenant_id, key), table_key(key, user_id))
        self._tables.delete(ITEMS, connection, str(item["RowKey"]))
        return Release.KEPT_SHARED if others else Release.REMOVED

    def folder_items(self, connection: str, folder_id: str) -> list[Entity]:
        """Return the items a mailbox holds as stored in one folder."""
        where = "PartitionKey eq @pk and folderId eq @folder"
        return list(self._tables.query(ITEMS, where, {"pk": connection, "folder": folder_id}))

    def item(self, connection: str, item_id: str) -> Entity | None:
        """Return what a mailbox item was stored as (email key, folder), or ``None``."""
        return self._tables.get(ITEMS, connection, table_key(item_id))

    def move_item(self, tenant_id: str, connection: str, item_id: str, folder_id: str) -> None:
        """Record that a stored mailbox item now lives in another folder, on both its links."""
        item = self.item(connection, item_id)
        if item is None:
            return
        row = {"PartitionKey": connection, "RowKey": table_key(item_id), "folderId": folder_id}
        self._tables.upsert(ITEMS, row)
        key, user_id = str(item["emailKey"]), item.get("userId")
        if user_id:
            holder = {
                "PartitionKey": email_partition(tenant_id, key),
                "RowKey": table_key(key, str(user_id)),
                "folderId": folder_id,
            }
            self._tables.upsert(HOLDERS, holder)

    def unlink(self, *, tenant_id: str, user_id: str, connection: str, item_id: str) -> bool:
        """Forget that a mailbox held an email; delete the email when no holder is left.

        The links go in the purge's crash-safe order (see :meth:`_release`).

        Returns:
            True when the email itself was deleted.
        """
        item = self.item(connection, item_id)
        if item is None:
            return False
        if self._held_elsewhere(connection, item):
            # The same email sits in another folder of this mailbox (a copy sent to oneself):
            # only this item goes; the user still holds the email.
            self._tables.delete(ITEMS, connection, str(item["RowKey"]))
            return False
        return self._release(tenant_id, user_id, connection, item) is Release.REMOVED

    def _held_elsewhere(self, connection: str, item: Entity) -> bool:
        """Tell whether another item of the same mailbox links to this item's email."""
        where = "PartitionKey eq @pk and emailKey eq @key"
        rows = self._tables.query(ITEMS, where, {"pk": connection, "key": item["emailKey"]})
        return any(row["RowKey"] != item["RowKey"] for row in rows)

    def holders(self, tenant_id: str, key: str) -> list[Entity]:
        """Return the holder rows of one email."""
        where = "PartitionKey eq @pk and emailKey eq @key"
        return list(
            self._tables.query(HOLDERS, where, {"pk": email_partition(tenant_id, key), "key": key})
        )

    def _delete_emails(self, tenant_id: str, keys: Sequence[str]) -> None:
        """Delete many emails as :meth:`_delete_email` does one, in batched transactions.

        Index rows of every email go first, then their blobs, then the email rows, so an
        interruption leaves each email either whole or without its index, never the reverse.
        """
        rows = [
            row
            for key in dict.fromkeys(keys)
            if (row := self._tables.get(EMAILS, email_partition(tenant_id, key), key))
        ]
        index: list[tuple[str, str]] = []
        inbox: list[tuple[str, str]] = []
        for row in rows:
            key = str(row["RowKey"])
            index_key = index_row_key(str(row["sortTime"]), key)
            index.extend(
                (table_key(tenant_id, company_id), index_key)
                for company_id in self._company_ids(row)
            )
            inbox.append((inbox_partition(tenant_id, key), index_key))
        self._tables.delete_batch(INDEX, index)
        self._tables.delete_batch(INBOX, inbox)
        for row in rows:
            for name in OVERFLOW_FIELDS:
                blob_name = row.get(name + BLOB_SUFFIX)
                if blob_name:
                    self._blobs.delete(str(blob_name))
        emails = [(email_partition(tenant_id, str(r["RowKey"])), str(r["RowKey"])) for r in rows]
        self._tables.delete_batch(EMAILS, emails)

    def _delete_email(self, tenant_id: str, key: str) -> None:
        """Delete an email row, its company index rows and its blobs; the row goes last."""
        partition = email_partition(tenant_id, key)
        row = self._tables.get(EMAILS, partition, key)
        if row is None:
            return
        index_key = index_row_key(str(row["sortTime"]), key)
        for company_id in self._company_ids(row):
            self._tables.delete(INDEX, table_key(tenant_id, company_id), index_key)
        self._tables.delete(INBOX, inbox_partition(tenant_id, key), index_key)
        for name in OVERFLOW_FIELDS:
            blob_name = row.get(name + BLOB_SUFFIX)
            if blob_name:
                self._blobs.delete(str(blob_name))
        self._tables.delete(EMAILS, partition, key)


def received_at(message: Mapping[str, Any]) -> str:
    """Return when a mailbox received a message, as its mailbox item keeps it (UTC, seconds)."""
    return instant(message.get("receivedDateTime")).isoformat(timespec="seconds")
