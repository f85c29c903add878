"""Who holds a kept email, and how an email leaves the product: unlinking, purging, deleting.

Each user's copy of an email is linked to the tenant's email by a holder row (``emailholders``)
and a mailbox item (``mailboxitems``). Taking a copy away removes those links and, when no other
user holds the email, the email itself with its index rows and blobs. Removals go in a crash-safe
order, the email before the links that lead to it, so repeating an interrupted one finishes it;
a purge's release deletes the mailbox item, which the purge walks, last of all. A purge releases
only the items received before its watermark (each item keeps ``receivedAt``); an item stored
before items kept that time is judged by its email's received time, which another holder may
have set.

Another mailbox may save the same email while a removal runs. The removal reads the email row's
ETag before the holders and deletes the row only if that ETag still holds; a saver writes its
holder row before the email row, so either the removal sees the new holder or its delete fails,
and the email then stays, indexed again. A row created again after its removal names new blobs.

Known limitations: a removal interrupted after the email row went and before its blobs did
leaves those blobs behind, unreferenced; repeating it does not find them.

Deleting an email in the product writes its tombstones first, one for the email and one for each
holder's mailbox item, so no later sync stores it again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.errors import ConflictError, TransientError
from shared.sync.emailmerge import SAVE_ATTEMPTS
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
    summary_row,
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
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        self._remove_emails(tenant_id, [row] if row else [], remover=None)
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
        shared: dict[str, bool] = {}
        doomed: list[Entity] = []
        for key in dict.fromkeys(str(item["emailKey"]) for item in items):
            row, holders = self._claim(tenant_id, key)
            if not any(h.get("userId") == user_id for h in holders):
                # Another item of this mailbox (the same email in a second folder) released
                # it in an earlier batch: only this item row is left to delete, and no count.
                continue
            if self._kept_elsewhere(tenant_id, connection, key, before):
                # A copy in another folder came after the purge: the mailbox keeps the email.
                continue
            shared[key] = any(h.get("userId") != user_id for h in holders)
            if row is not None and not shared[key]:
                doomed.append(row)
        # The same order as one item's release, a step at a time for the whole batch: the
        # emails no one else holds, then this user's holder rows, then the item rows last.
        kept = self._remove_emails(tenant_id, doomed, remover=user_id)
        holder_keys = [(email_partition(tenant_id, k), table_key(k, user_id)) for k in shared]
        self._tables.delete_batch(HOLDERS, holder_keys)
        self._tables.delete_batch(ITEMS, [(connection, str(item["RowKey"])) for item in items])
        for key, others in shared.items():
            counts[str(Release.KEPT_SHARED if others or key in kept else Release.REMOVED)] += 1
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

    def _claim(self, tenant_id: str, key: str) -> tuple[Entity | None, list[Entity]]:
        """Read an email row, then its holders, for a removal that is conditional on the row.

        NOTE: the row (and so its ETag) must be read before the holders. A saver writes its
        holder row before it writes the email row, so a holder this query misses changes the
        ETag afterwards and the removal's conditional delete of the email fails.
        """
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        return row, self.holders(tenant_id, key)

    def _release(self, tenant_id: str, user_id: str, connection: str, item: Entity) -> Release:
        """Take one mailbox item out of the product.

        The email goes when no other user holds it, and no one saved it meanwhile; otherwise
        only this holder goes. The item row, which a purge walks, is deleted last, so a purge
        killed anywhere in between finds the item again and finishes it.
        """
        key = str(item["emailKey"])
        row, holders = self._claim(tenant_id, key)
        shared = any(h.get("userId") != user_id for h in holders)
        if row is not None and not shared:
            shared = key in self._remove_emails(tenant_id, [row], remover=user_id)
        self._tables.delete(HOLDERS, email_partition(tenant_id, key), table_key(key, user_id))
        self._tables.delete(ITEMS, connection, str(item["RowKey"]))
        return Release.KEPT_SHARED if shared else Release.REMOVED

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

    def _remove_emails(
        self, tenant_id: str, rows: Sequence[Entity], *, remover: str | None
    ) -> set[str]:
        """Delete emails with their index rows and blobs; return the keys of those kept.

        The index rows of every email go first, in batched transactions, then each email row,
        then the blobs of the rows that went, so an interruption leaves an email either whole
        or without its index, never the reverse. With a ``remover`` (the user whose copy goes),
        each email row goes only if unchanged since it was read (see :meth:`_delete_row`).
        """
        entries = [entry for row in rows for entry in self._index_entries(tenant_id, row)]
        for table in (INDEX, INBOX):
            self._tables.delete_batch(table, [(pk, rk) for t, pk, rk in entries if t == table])
        kept = {str(row["RowKey"]) for row in rows if not self._delete_row(tenant_id, row, remover)}
        for key in kept:
            self._reindex(tenant_id, key)
        return kept

    def _delete_row(self, tenant_id: str, row: Entity, remover: str | None) -> bool:
        """Delete an email row and then its blobs; return False when the email stays.

        A saver writes its holder row before the email row, so a changed ETag may mean someone
        now holds the email: the holders are read again and the email stays when another user
        holds it. A change by no new holder (a company dropped, say) is only retried.

        Raises:
            TransientError: when the row kept changing under every attempt to delete it.
        """
        key = str(row["RowKey"])
        current: Entity | None = row
        for _ in range(SAVE_ATTEMPTS):
            if current is None:
                return True
            etag = str(current[ETAG]) if remover else None
            try:
                self._tables.delete(EMAILS, email_partition(tenant_id, key), key, etag=etag)
            except ConflictError:
                current, holders = self._claim(tenant_id, key)
                if any(h.get("userId") != remover for h in holders):
                    return False
                self._delete_index(tenant_id, current)
                continue
            self._delete_blobs(current)
            return True
        self._reindex(tenant_id, key)
        msg = f"email {key} changed under every attempt to remove it"
        raise TransientError(msg)

    def _delete_index(self, tenant_id: str, row: Entity | None) -> None:
        """Delete the index rows of an email row, if there is one."""
        for table, partition, index_key in self._index_entries(tenant_id, row) if row else []:
            self._tables.delete(table, partition, index_key)

    def _index_entries(self, tenant_id: str, row: Entity) -> list[tuple[str, str, str]]:
        """Return (table, partition, row key) of an email row's company and inbox index rows."""
        key = str(row["RowKey"])
        index_key = index_row_key(str(row["sortTime"]), key)
        entries = [
            (INDEX, table_key(tenant_id, company_id), index_key)
            for company_id in sorted(self._company_ids(row))
        ]
        entries.append((INBOX, inbox_partition(tenant_id, key), index_key))
        return entries

    def _reindex(self, tenant_id: str, key: str) -> None:
        """Write the index rows of an email that stayed, after its removal took them away."""
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        if row is None:
            return
        summary = summary_row(key, row, self._shown(row))
        for table, partition, index_key in self._index_entries(tenant_id, row):
            self._tables.upsert(table, {"PartitionKey": partition, "RowKey": index_key, **summary})

    def _delete_blobs(self, row: Entity) -> None:
        """Delete the blobs an email row's moved fields live in."""
        for name in OVERFLOW_FIELDS:
            blob_name = row.get(name + BLOB_SUFFIX)
            if blob_name:
                self._blobs.delete(str(blob_name))


def received_at(message: Mapping[str, Any]) -> str:
    """Return when a mailbox received a message, as its mailbox item keeps it (UTC, seconds)."""
    return instant(message.get("receivedDateTime")).isoformat(timespec="seconds")
