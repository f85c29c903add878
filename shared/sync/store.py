"""Where kept emails live: one record per email in a tenant, its holders, and company indexes.

Tables:

- ``emails``: one row per email, keyed by the SHA-256 of the tenant and ``internetMessageId``
  (or, for a message without one, of the connection and the immutable id, so those are never
  merged across users). Partitions are the tenant plus the key's first two hex digits, so a
  tenant's sync load spreads over 256 partitions.
- ``emailholders``: one row per (email, user) holding it, in the email's partition.
- ``mailboxitems``: per connection, immutable message id to email key and folder.
- ``companyemails``: per (tenant, company), one summary row per email, newest first.
- ``tenantemails``: the shared inbox, one summary row per email of the tenant, newest first, in
  16 partitions per tenant (by the key's first hex digit) so no partition takes a tenant's
  whole sync load. A page reads the head of every partition and merges them.

Every summary row of both indexes has the same row key for one email (inverted receive time,
then the email key), so a merged page of several partitions continues after one row key.

- ``emailtombstones``: what a user or admin deleted, so it never syncs back: one row per email
  key (the ``internetMessageId`` of the tenant, in the email's partition) and one per mailbox
  item (its immutable id, in a ``~i|<connection>`` partition).

A string too large for a table property (the body, a huge recipient list) moves to Blob Storage
and the row records the blob's name instead, so bodies of any size are stored whole.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import (
    MAX_ENTITY_BYTES,
    entity_size,
    guard_entity,
    string_fits,
    table_key,
)
from shared.adapters.tables import ETAG, PAGE_RULE, decode_page_token, encode_page_token
from shared.errors import (
    ConflictError,
    StorageLimitError,
    SyncError,
    TransientError,
    ValidationError,
)
from shared.matching.addresses import parse_address
from shared.sync.jobs import instant

if TYPE_CHECKING:
    from shared.adapters.blobs import BlobBodyStore
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.matching.addresses import Address

EMAILS = "emails"
HOLDERS = "emailholders"
ITEMS = "mailboxitems"
INDEX = "companyemails"
INBOX = "tenantemails"
TOMBSTONES = "emailtombstones"
ITEM_TOMBSTONE_PREFIX = "~i|"
SAVE_ATTEMPTS = 5
SAVE_WORKERS = 3
"""Kept messages of a page written at once: with a mail job's 3 folders, 9 Table requests in
flight, within azure-core's 10 pooled connections."""
MERGE_WORKERS = 8
"""Partitions read at once by a merged page; below azure-core's 10 pooled connections."""
MAX_MERGED_PARTITIONS = 500
BLOB_SUFFIX = "Blob"
OVERFLOW_FIELDS = (
    "body",
    "recipients",
    "subject",
    "bodyPreview",
    "from",
    "conversationId",
    "internetMessageId",
    "companyIds",
)
"""Every string of an email row that outside input can make large; each may move to a blob."""
SUMMARY_ADDRESS_CHARS = 320
SUMMARY_SUBJECT_CHARS = 512
_NEVER = 9_999_999_999


def email_key(
    tenant_id: str, internet_message_id: str | None, connection: str, item_id: str
) -> str:
    """Return the tenant-wide key of an email: by Message-ID when it has one, else per mailbox."""
    message_id = (internet_message_id or "").strip()
    scope = f"imid\n{tenant_id}\n{message_id}" if message_id else f"item\n{connection}\n{item_id}"
    return hashlib.sha256(scope.encode("utf-8")).hexdigest()


def email_partition(tenant_id: str, key: str) -> str:
    """Return the partition of an email: the tenant spread over 256 shards."""
    return table_key(tenant_id, key[:2])


def inbox_partitions(tenant_id: str) -> list[str]:
    """Return the 16 partitions of a tenant's shared inbox."""
    return [table_key(tenant_id, "inbox", digit) for digit in "0123456789abcdef"]


def _inbox_partition(tenant_id: str, key: str) -> str:
    return table_key(tenant_id, "inbox", key[0])


class _LookAlikeError(SyncError):
    """Raised inside the store when a message reuses the Message-ID of a different email."""


class EmailDeletedError(SyncError):
    """Raised when a message to save was deleted in the product: it must not come back."""


@dataclass(frozen=True, slots=True)
class KeptMessage:
    """A Graph message sync decided to keep, with what the decision found in it."""

    message: Mapping[str, Any]
    participants: Sequence[Address]
    company_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Staged:
    """A kept message whose email and holder rows are written; its item and indexes follow."""

    position: int
    key: str
    item_id: str
    row: Entity
    message: Mapping[str, Any]
    created: bool
    item: Entity


class Release(StrEnum):
    """What releasing one mailbox item did to its email."""

    REMOVED = "removed"
    """The mailbox was the email's last holder: the email is gone."""
    KEPT_SHARED = "keptShared"
    """Another user holds the email too: it stays, without this holder."""


class EmailStore:
    """Writes kept emails and reads them back for the API."""

    def __init__(self, tables: TableEntityStore, blobs: BlobBodyStore) -> None:
        self._tables = tables
        self._blobs = blobs

    def save(
        self,
        *,
        tenant_id: str,
        user_id: str,
        connection: str,
        message: Mapping[str, Any],
        participants: Sequence[Address],
        company_ids: frozenset[str],
    ) -> bool:
        """Store a kept message and link it to its holder and companies; True when new.

        A message deleted through the power tools is refused, also when the deletion lands while
        this save runs: the tombstone is checked again after the writes, which are then undone.

        Raises:
            EmailDeletedError: when the email or this mailbox item carries a tombstone.
            StorageLimitError: when one of its rows cannot be stored.
        """
        kept = KeptMessage(message, participants, company_ids)
        (outcome,) = self.save_page(
            tenant_id=tenant_id, user_id=user_id, connection=connection, kept=[kept]
        )
        if not isinstance(outcome, bool):
            raise outcome
        return outcome

    def save_page(
        self, *, tenant_id: str, user_id: str, connection: str, kept: Sequence[KeptMessage]
    ) -> list[bool | EmailDeletedError | StorageLimitError]:
        """Store the kept messages of one mailbox's delta page, as :meth:`save` does each.

        The page's item tombstones are read with one query of the connection's partition, its
        mailbox items, all in the connection's partition, go in one transaction, and its company
        and inbox index rows in one transaction per partition they share. The order
        per message stays the crash-safe one (email, holder, mailbox item, indexes, then the
        re-check of the email's tombstone), a step at a time for the whole page, each step on
        :data:`SAVE_WORKERS` threads.

        Returns:
            Per kept message, in order: True when new, False when it was stored before, or the
            error that refused it (deleted in the product, or a row that cannot be stored).
        """
        outcomes: list[bool | EmailDeletedError | StorageLimitError] = [False] * len(kept)
        deleted = self.deleted_items(connection, [str(k.message["id"]) for k in kept])

        def stage(position: int) -> _Staged | None:
            try:
                return self._stage(
                    tenant_id,
                    user_id,
                    connection,
                    kept[position],
                    deleted=deleted,
                    position=position,
                )
            except (EmailDeletedError, StorageLimitError) as error:
                outcomes[position] = error
                return None

        def confirm(entry: _Staged) -> None:
            try:
                self._confirm(tenant_id, connection, entry)
            except EmailDeletedError as error:
                outcomes[entry.position] = error
                return
            outcomes[entry.position] = entry.created

        # The messages are independent, so each step runs on a few threads; every step ends
        # for the whole page before the next begins, which keeps the crash-safe order.
        with ThreadPoolExecutor(max_workers=SAVE_WORKERS, thread_name_prefix="save") as pool:
            staged = [entry for entry in pool.map(stage, range(len(kept))) if entry]
            items = {entry.item["RowKey"]: entry.item for entry in staged}
            self._tables.upsert_batch(ITEMS, list(items.values()))
            groups, indexed = self._index_rows(tenant_id, staged, outcomes)
            list(pool.map(self._upsert_group, groups.items()))
            list(pool.map(confirm, indexed))
        return outcomes

    def deleted_items(self, connection: str, item_ids: Sequence[str]) -> set[str]:
        """Return which of a mailbox's items carry a tombstone, with one partition query."""
        if not item_ids:
            return set()
        wanted = {table_key(item_id): item_id for item_id in item_ids}
        rows = self._tables.list_partition(TOMBSTONES, ITEM_TOMBSTONE_PREFIX + connection)
        return {wanted[str(row["RowKey"])] for row in rows if str(row["RowKey"]) in wanted}

    def _stage(
        self,
        tenant_id: str,
        user_id: str,
        connection: str,
        kept: KeptMessage,
        *,
        deleted: set[str],
        position: int,
    ) -> _Staged:
        """Write a kept message's email and holder rows; return its mailbox item to write.

        Raises:
            EmailDeletedError: when the email or this mailbox item carries a tombstone.
        """
        message, item_id = kept.message, str(kept.message["id"])
        # A message reusing another email's Message-ID is stored apart, as one without it.
        apart = email_key(tenant_id, None, connection, item_id)
        for key in (
            email_key(tenant_id, message.get("internetMessageId"), connection, item_id),
            apart,
        ):
            if item_id in deleted or self._tombstoned(tenant_id, key):
                msg = f"email {key} was deleted in the product"
                raise EmailDeletedError(msg)
            try:
                existing, row = self._write_email(
                    tenant_id,
                    key,
                    message,
                    participants=kept.participants,
                    company_ids=kept.company_ids,
                    copies_only=key != apart,
                )
            except _LookAlikeError:
                continue
            break
        item = self._link(tenant_id, user_id, connection, key, message)
        guard_entity(ITEMS, item)
        return _Staged(position, key, item_id, row, message, existing is None, item)

    def _index_rows(
        self,
        tenant_id: str,
        staged: Sequence[_Staged],
        outcomes: list[bool | EmailDeletedError | StorageLimitError],
    ) -> tuple[dict[tuple[str, str], dict[str, Entity]], list[_Staged]]:
        """Group the company and inbox index rows of a page's linked emails by partition.

        A message with a row that cannot be stored is refused (its outcome says why) and left
        out, as a failed write of that row refused it before.

        Returns:
            The rows by (table, partition), each once by row key, and the messages they index.
        """
        groups: dict[tuple[str, str], dict[str, Entity]] = {}
        indexed: list[_Staged] = []
        for entry in staged:
            key, row = entry.key, entry.row
            index_key, summary = (
                _index_key(str(row["sortTime"]), key),
                _summary(key, row, entry.message),
            )
            rows = [
                (INDEX, {"PartitionKey": table_key(tenant_id, company), "RowKey": index_key})
                for company in sorted(self._company_ids(row))
            ]
            rows.append(
                (INBOX, {"PartitionKey": _inbox_partition(tenant_id, key), "RowKey": index_key})
            )
            try:
                for table, keys in rows:
                    guard_entity(table, {**keys, **summary})
            except StorageLimitError as error:
                outcomes[entry.position] = error
                continue
            indexed.append(entry)
            for table, keys in rows:
                groups.setdefault((table, keys["PartitionKey"]), {})[index_key] = {
                    **keys,
                    **summary,
                }
        return groups, indexed

    def _upsert_group(self, group: tuple[tuple[str, str], dict[str, Entity]]) -> None:
        """Write the index rows of one partition in one transaction (up to 100 rows each)."""
        (table, _), rows = group
        self._tables.upsert_batch(table, list(rows.values()))

    def _confirm(self, tenant_id: str, connection: str, entry: _Staged) -> None:
        """Undo the save of a linked and indexed email if it was deleted meanwhile.

        Raises:
            EmailDeletedError: when the email's tombstone appeared while it was saved.
        """
        key, row = entry.key, entry.row
        if not self._tombstoned(tenant_id, key):
            return
        # The deletion may have run between this save's writes and found no row yet, so the
        # index rows and the mailbox item written here go by name, around deleting the rest.
        index_key = _index_key(str(row["sortTime"]), key)
        for company_id in self._company_ids(row):
            self._tables.delete(INDEX, table_key(tenant_id, company_id), index_key)
        self._tables.delete(INBOX, _inbox_partition(tenant_id, key), index_key)
        self.delete_email(tenant_id, key)
        self._tables.delete(ITEMS, connection, table_key(entry.item_id))
        msg = f"email {key} was deleted in the product while it was saved"
        raise EmailDeletedError(msg)

    def _write_email(
        self,
        tenant_id: str,
        key: str,
        message: Mapping[str, Any],
        *,
        participants: Sequence[Address],
        company_ids: frozenset[str],
        copies_only: bool = True,
    ) -> tuple[Entity | None, Entity]:
        """Write an email row, merging with a copy another mailbox's worker writes at once.

        The first writer creates the row; every later one replaces it only if unchanged since
        it read it, keeping the first sort time and every company either copy matched. A lost
        race re-reads and merges again, so two holders syncing one email at the same moment
        leave one row, one sort time and so one index row per company.

        A stored row is only merged with a copy of the same email: same sender and sent time
        (:func:`copy_fingerprint`). A message that merely reuses its Message-ID is refused, so
        it can neither overwrite the row nor make its holder one of the email's. ``copies_only``
        is False for a row keyed by the mailbox item itself, which only that item writes.

        Returns:
            The row as it was before (``None`` when this write created it), and as written.

        Raises:
            TransientError: when the row kept changing under this writer.
        """
        partition = email_partition(tenant_id, key)
        existing = self._tables.get(EMAILS, partition, key)
        fingerprint = copy_fingerprint(message)
        for _ in range(SAVE_ATTEMPTS):
            if copies_only and existing and existing.get("fingerprint", fingerprint) != fingerprint:
                msg = f"email {key} is held by another email with the same Message-ID"
                raise _LookAlikeError(msg)
            sort_time = str(existing["sortTime"]) if existing else _sort_time(message)
            row = _email_row(
                tenant_id,
                key,
                message,
                participants=participants,
                companies=company_ids | self._company_ids(existing),
                sort_time=sort_time,
                fingerprint=fingerprint,
            )
            entity = self._overflow(tenant_id, key, row)
            try:
                if existing is None:
                    self._tables.create(EMAILS, entity)
                else:
                    self._tables.update(EMAILS, entity, etag=existing[ETAG])
            except ConflictError:
                existing = self._tables.get(EMAILS, partition, key)
                continue
            return existing, row
        msg = f"email {key} changed under every attempt to save it"
        raise TransientError(msg)

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

    def _item_tombstoned(self, connection: str, item_id: str) -> bool:
        partition = ITEM_TOMBSTONE_PREFIX + connection
        return self._tables.get(TOMBSTONES, partition, table_key(item_id)) is not None

    def mailbox_items(self, connection: str, *, size: int) -> list[Entity]:
        """Return up to ``size`` of the items a mailbox still links to stored emails."""
        rows, _ = self._tables.head(ITEMS, "PartitionKey eq @pk", {"pk": connection}, size=size)
        return rows

    def release_batch(
        self, *, tenant_id: str, user_id: str, connection: str, size: int
    ) -> tuple[dict[str, int], bool]:
        """Take up to ``size`` of a mailbox's items out of the product, for a purge.

        Returns:
            How many emails went and how many stayed for other holders, and whether the
            mailbox had items left when the batch began (so another batch must look).
        """
        counts: Counter[str] = Counter()
        items = self.mailbox_items(connection, size=size)
        doomed: list[str] = []
        holder_keys: list[tuple[str, str]] = []
        for item in items:
            key = str(item["emailKey"])
            others = [h for h in self.holders(tenant_id, key) if h.get("userId") != user_id]
            if not others:
                doomed.append(key)
            holder_keys.append((email_partition(tenant_id, key), table_key(key, user_id)))
            counts[str(Release.KEPT_SHARED if others else Release.REMOVED)] += 1
        # The same order as one item's release, a step at a time for the whole batch: the
        # emails no one else holds, then this user's holder rows, then the item rows last.
        self._delete_emails(tenant_id, doomed)
        self._tables.delete_batch(HOLDERS, holder_keys)
        self._tables.delete_batch(ITEMS, [(connection, str(item["RowKey"])) for item in items])
        return dict(counts), bool(items)

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

    def _link(
        self, tenant_id: str, user_id: str, connection: str, key: str, message: Mapping[str, Any]
    ) -> Entity:
        """Write the holder row of a kept message; return its mailbox item row, not yet written."""
        item_id, folder = str(message["id"]), str(message.get("parentFolderId", ""))
        holder = {
            "PartitionKey": email_partition(tenant_id, key),
            "RowKey": table_key(key, user_id),
            "emailKey": key,
            "userId": user_id,
            "connection": connection,
            "itemId": item_id,
            "folderId": folder,
        }
        self._tables.upsert(HOLDERS, holder)
        return {
            "PartitionKey": connection,
            "RowKey": table_key(item_id),
            "emailKey": key,
            "itemId": item_id,
            "userId": user_id,
            "folderId": folder,
        }

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

    def thread_companies(
        self, tenant_id: str, internet_message_ids: Sequence[str]
    ) -> frozenset[str]:
        """Return the companies of the first stored email among these Message-IDs, else none."""
        for internet_message_id in internet_message_ids:
            key = email_key(tenant_id, internet_message_id, "", "")
            row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
            if row is not None:
                return self._company_ids(row)
        return frozenset()

    def _company_ids(self, row: Entity | None) -> frozenset[str]:
        """Return the companies an email row is linked to, read from a blob if it moved."""
        if row is None:
            return frozenset()
        text = row.get("companyIds")
        blob_name = row.get("companyIds" + BLOB_SUFFIX)
        if text is None and blob_name:
            text = self._blobs.get_text(str(blob_name))
        return frozenset(json.loads(text or "[]"))

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
            index_key = _index_key(str(row["sortTime"]), key)
            index.extend(
                (table_key(tenant_id, company_id), index_key)
                for company_id in self._company_ids(row)
            )
            inbox.append((_inbox_partition(tenant_id, key), index_key))
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
        index_key = _index_key(str(row["sortTime"]), key)
        for company_id in self._company_ids(row):
            self._tables.delete(INDEX, table_key(tenant_id, company_id), index_key)
        self._tables.delete(INBOX, _inbox_partition(tenant_id, key), index_key)
        for name in OVERFLOW_FIELDS:
            blob_name = row.get(name + BLOB_SUFFIX)
            if blob_name:
                self._blobs.delete(str(blob_name))
        self._tables.delete(EMAILS, partition, key)

    def _overflow(self, tenant_id: str, key: str, row: Entity) -> Entity:
        """Move strings that break a table limit into blobs, largest first."""
        for name in OVERFLOW_FIELDS:
            value = row.get(name)
            if isinstance(value, str) and not string_fits(value):
                row = self._to_blob(tenant_id, key, row, name)
        for name in sorted(OVERFLOW_FIELDS, key=lambda n: -len(str(row.get(n, "")))):
            if entity_size(row) <= MAX_ENTITY_BYTES:
                break
            if isinstance(row.get(name), str):
                row = self._to_blob(tenant_id, key, row, name)
        return row

    def _to_blob(self, tenant_id: str, key: str, row: Entity, name: str) -> Entity:
        blob_name = f"{table_key(tenant_id)}/{key}/{name}"
        content_type = (
            "text/html" if name == "body" and row.get("bodyType") == "html" else "text/plain"
        )
        self._blobs.put_text(blob_name, str(row[name]), content_type)
        moved = {k: v for k, v in row.items() if k != name}
        moved[name + BLOB_SUFFIX] = blob_name
        return moved

    def company_page(
        self, tenant_id: str, company_id: str, *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of a company's email summaries, newest first."""
        where = "PartitionKey eq @pk"
        return self._tables.page(
            INDEX, where, {"pk": table_key(tenant_id, company_id)}, size=size, token=token
        )

    def inbox_page(
        self, tenant_id: str, *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of the tenant's shared inbox, newest first.

        Raises:
            ValidationError: when the continuation token is not one this store issued.
        """
        return self._merged_page(INBOX, inbox_partitions(tenant_id), size=size, token=token)

    def companies_page(
        self, tenant_id: str, company_ids: Sequence[str], *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of the emails of several companies, newest first, each email once.

        Raises:
            ValidationError: when the continuation token is not one this store issued.
        """
        partitions = [table_key(tenant_id, company_id) for company_id in sorted(set(company_ids))]
        return self._merged_page(INDEX, partitions[:MAX_MERGED_PARTITIONS], size=size, token=token)

    def _merged_page(
        self, table: str, partitions: Sequence[str], *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Merge the heads of several partitions whose rows share one row key order.

        Each partition gives its first ``size`` rows after the cursor, so the ``size`` smallest
        keys of their union are the page; the next page starts after its last key.
        """
        after = _decode_cursor(token, table)
        where = "PartitionKey eq @pk" + (" and RowKey gt @after" if after else "")

        def head(partition: str) -> tuple[list[Entity], bool]:
            parameters = {"pk": partition, "after": after} if after else {"pk": partition}
            return self._tables.head(table, where, parameters, size=size)

        if not partitions:
            return [], None
        with ThreadPoolExecutor(max_workers=min(MERGE_WORKERS, len(partitions))) as pool:
            heads = list(pool.map(head, partitions))
        unique = {str(row["RowKey"]): row for rows, _ in heads for row in rows}
        ordered = [unique[name] for name in sorted(unique)]
        more = len(ordered) > size or any(truncated for _, truncated in heads)
        page = ordered[:size]
        return page, (_encode_cursor(str(page[-1]["RowKey"]), table) if more and page else None)

    def forget_company(self, tenant_id: str, company_id: str) -> int:
        """Drop a deleted company from its emails and its email index; return how many went.

        The emails stay (other companies or holders may need them) but no longer name the
        company, so a company later created under the same id gains no access to them and
        starts with an empty list. Each email is changed before its index row goes, so
        repeating this after a crash finishes it.
        """
        partition = table_key(tenant_id, company_id)
        rows = list(self._tables.list_partition(INDEX, partition))
        for row in rows:
            self._drop_company(tenant_id, str(row["emailKey"]), company_id)
            self._tables.delete(INDEX, partition, str(row["RowKey"]))
        return len(rows)

    def _drop_company(self, tenant_id: str, key: str, company_id: str) -> None:
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        companies = self._company_ids(row)
        if row is None or company_id not in companies:
            return
        changed = {k: v for k, v in row.items() if k not in ("companyIdsBlob", ETAG)}
        changed["companyIds"] = json.dumps(sorted(companies - {company_id}))
        self._tables.update(EMAILS, self._overflow(tenant_id, key, changed), etag=row[ETAG])

    def get_email(self, tenant_id: str, key: str) -> Entity | None:
        """Return a stored email with every moved field read back from Blob Storage."""
        if len(key) != 64 or any(ch not in "0123456789abcdef" for ch in key):
            return None
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        if row is None:
            return None
        for name in OVERFLOW_FIELDS:
            blob_name = row.pop(name + BLOB_SUFFIX, None)
            if blob_name:
                row[name] = self._blobs.get_text(str(blob_name)) or ""
        return row

    def holders(self, tenant_id: str, key: str) -> list[Entity]:
        """Return the holder rows of one email."""
        where = "PartitionKey eq @pk and emailKey eq @key"
        return list(
            self._tables.query(HOLDERS, where, {"pk": email_partition(tenant_id, key), "key": key})
        )


def _email_row(
    tenant_id: str,
    key: str,
    message: Mapping[str, Any],
    *,
    participants: Sequence[Address],
    companies: frozenset[str],
    sort_time: str,
    fingerprint: str,
) -> Entity:
    body = message.get("body") or {}
    return {
        "PartitionKey": email_partition(tenant_id, key),
        "RowKey": key,
        "tenantId": tenant_id,
        "internetMessageId": (message.get("internetMessageId") or "").strip(),
        "conversationId": message.get("conversationId") or "",
        "subject": message.get("subject") or "",
        "bodyPreview": message.get("bodyPreview") or "",
        "bodyType": str(body.get("contentType", "text")).lower(),
        "body": body.get("content") or "",
        "from": json.dumps(_address(message.get("from"))),
        "recipients": json.dumps(_recipients(message)),
        "participants": len(participants),
        "sentDateTime": message.get("sentDateTime") or "",
        "receivedDateTime": message.get("receivedDateTime") or "",
        "hasAttachments": bool(message.get("hasAttachments")),
        "companyIds": json.dumps(sorted(companies)),
        "sortTime": sort_time,
        "fingerprint": fingerprint,
    }


def copy_fingerprint(message: Mapping[str, Any]) -> str:
    """Return what every copy of one email shares: its sender's address and its sent time.

    Each mailbox holding an email has its own copy with the same ``from`` and ``sentDateTime``;
    a message that only reuses the Message-ID (which everyone on a thread can read in
    ``In-Reply-To``) almost never has both.
    """
    sender = _address(message.get("from")).get("address", "")
    parsed = parse_address(sender) if sender else None
    sent = instant(message.get("sentDateTime"))
    text = f"{parsed.address if parsed else sender.casefold()}\n{sent.isoformat()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _address(value: Any) -> dict[str, str]:
    email = value.get("emailAddress") if isinstance(value, Mapping) else None
    if not isinstance(email, Mapping):
        return {}
    return {"name": str(email.get("name") or ""), "address": str(email.get("address") or "")}


def _recipients(message: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    lists = {"to": "toRecipients", "cc": "ccRecipients", "bcc": "bccRecipients"}
    return {
        short: [_address(item) for item in message.get(name) or [] if _address(item)]
        for short, name in lists.items()
    }


def _summary(key: str, row: Entity, message: Mapping[str, Any]) -> Entity:
    subject = str(message.get("subject") or "")
    return {
        "emailKey": key,
        "subject": subject[:SUMMARY_SUBJECT_CHARS],
        "from": json.dumps(
            {k: v[:SUMMARY_ADDRESS_CHARS] for k, v in _address(message.get("from")).items()}
        ),
        "bodyPreview": str(message.get("bodyPreview") or "")[:255],
        "sentDateTime": row["sentDateTime"],
        "receivedDateTime": row["receivedDateTime"],
        "hasAttachments": row["hasAttachments"],
        "internetMessageId": row["internetMessageId"][:1024],
    }


def _sort_time(message: Mapping[str, Any]) -> str:
    """Order by when the mailbox received it: the sender chooses the sent date, not Exchange.

    A date in the future is clamped to now, so no message can pin itself to the top.
    """
    moment = instant(message.get("receivedDateTime") or message.get("sentDateTime"))
    return min(moment, datetime.now(UTC)).isoformat(timespec="seconds")


_CURSOR = re.compile(r"[0-9]{10}\|[0-9a-f]{64}")


def _encode_cursor(row_key: str, table: str) -> str:
    return encode_page_token({"after": row_key, "list": table})


def _decode_cursor(token: str | None, table: str) -> str | None:
    """Read a merged page's continuation token: the row key the page ended on.

    Raises:
        ValidationError: when the token is not one :func:`_encode_cursor` made for this list.
    """
    if not token:
        return None
    decoded = decode_page_token(token)
    after = decoded.get("after")
    if decoded.get("list") != table or not isinstance(after, str) or not _CURSOR.fullmatch(after):
        raise ValidationError(field="continuationToken", rule=PAGE_RULE)
    return after


def _index_key(sort_time: str, key: str) -> str:
    # Dates before 1970 (Exchange's 0001-01-01 placeholder) or past _NEVER would make the
    # number longer than 10 digits or negative and break the lexical order, so clamp them.
    seconds = min(max(int(datetime.fromisoformat(sort_time).timestamp()), 0), _NEVER)
    return f"{_NEVER - seconds:010d}|{key}"
