"""Where kept emails live: the store sync saves them with, a delta page at a time.

:class:`EmailStore` is the one store of kept emails. Its parts live in their own modules:
:mod:`shared.sync.emailrows` (the tables, keys and rows), :mod:`shared.sync.emailmerge` (one row
for all copies of an email, none shared with a look-alike), :mod:`shared.sync.emaillinks`
(holders, mailbox items, tombstones, unlinking and deleting) and :mod:`shared.sync.emailreads`
(the API's pages and whole emails). This module saves: each kept message of a page becomes its
holder row, the email row, the mailbox item and the index rows, in that order, and a tombstone
found after the writes undoes them, so a message deleted in the product never comes back. The
holder goes before the email row so that a removal of another holder's copy running at the same
moment either sees this holder or fails its conditional delete of the email row.

A kept message without an immutable id, or one whose rows fail to build on a field of a shape
Graph does not document, is refused alone (:class:`UnreadableMessageError`); the rest of its
page is stored.

Known limitations: a message refused that way after its holder row was written (the email row
failed to build) leaves that holder row without an email row until another copy of it is
stored.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import guard_entity, table_key
from shared.errors import StorageLimitError, SyncError
from shared.sync.emaillinks import EmailLinks, received_at
from shared.sync.emailmerge import EmailMerging, LookAlikeError
from shared.sync.emailreads import EmailReads
from shared.sync.emailrows import (
    INBOX,
    INDEX,
    ITEMS,
    email_key,
    email_partition,
    holder_bcc,
    inbox_partition,
    index_row_key,
    internet_message_id,
    message_item_id,
    summary_row,
    text,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.adapters.tables import Entity
    from shared.matching.addresses import Address

SAVE_WORKERS = 3
"""Kept messages of a page written at once: with a mail job's 3 folders, 9 Table requests in
flight, within azure-core's 10 pooled connections."""


class EmailDeletedError(SyncError):
    """Raised when a message to save was deleted in the product: it must not come back."""


class UnreadableMessageError(SyncError):
    """Raised inside the store when a kept message has no immutable id or no row can hold it."""


Outcome = bool | EmailDeletedError | StorageLimitError | UnreadableMessageError
"""What saving one kept message came to: new (True), stored before (False), or why not."""


@dataclass(frozen=True, slots=True)
class KeptMessage:
    """A Graph message sync decided to keep, with what the decision found in it."""

    message: Mapping[str, Any]
    participants: Sequence[Address]
    company_ids: frozenset[str]
    bcc_company_ids: frozenset[str] = frozenset()
    """The companies only this copy's Bcc recipients reach: shown to this holder alone."""


@dataclass(frozen=True, slots=True)
class _Staged:
    """A kept message whose holder and email rows are written; its item and indexes follow."""

    position: int
    key: str
    item_id: str
    row: Entity
    message: Mapping[str, Any]
    created: bool
    item: Entity


class EmailStore(EmailMerging, EmailLinks, EmailReads):
    """Writes kept emails and reads them back for the API."""

    def save(
        self,
        *,
        tenant_id: str,
        user_id: str,
        connection: str,
        message: Mapping[str, Any],
        participants: Sequence[Address],
        company_ids: frozenset[str],
        bcc_company_ids: frozenset[str] = frozenset(),
    ) -> bool:
        """Store a kept message and link it to its holder and companies; True when new.

        A message deleted through the power tools is refused, also when the deletion lands while
        this save runs: the tombstone is checked again after the writes, which are then undone.

        Raises:
            EmailDeletedError: when the email or this mailbox item carries a tombstone.
            StorageLimitError: when one of its rows cannot be stored.
        """
        kept = KeptMessage(message, participants, company_ids, bcc_company_ids)
        (outcome,) = self.save_page(
            tenant_id=tenant_id, user_id=user_id, connection=connection, kept=[kept]
        )
        if not isinstance(outcome, bool):
            raise outcome
        return outcome

    def save_page(
        self, *, tenant_id: str, user_id: str, connection: str, kept: Sequence[KeptMessage]
    ) -> list[Outcome]:
        """Store the kept messages of one mailbox's delta page, as :meth:`save` does each.

        The page's item tombstones are read with one query of the connection's partition, its
        mailbox items, all in the connection's partition, go in one transaction, and its company
        and inbox index rows in one transaction per partition they share. The order
        per message stays the crash-safe one (holder, email, mailbox item, indexes, then the
        re-check of the email's tombstone), a step at a time for the whole page, each step on
        :data:`SAVE_WORKERS` threads.

        Returns:
            Per kept message, in order: True when new, False when it was stored before, or the
            error that refused it (deleted in the product, a row that cannot be stored, or a
            message without an id or of a shape no row holds).
        """
        outcomes: list[Outcome] = [False] * len(kept)
        ids = [message_item_id(entry.message) for entry in kept]
        deleted = self.deleted_items(connection, [item_id for item_id in ids if item_id])

        def stage(position: int) -> _Staged | None:
            try:
                return self._stage_readable(
                    tenant_id,
                    user_id,
                    connection,
                    kept[position],
                    deleted=deleted,
                    position=position,
                )
            except (EmailDeletedError, StorageLimitError, UnreadableMessageError) as error:
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

    def _stage_readable(
        self,
        tenant_id: str,
        user_id: str,
        connection: str,
        kept: KeptMessage,
        *,
        deleted: set[str],
        position: int,
    ) -> _Staged:
        """Stage a kept message as :meth:`_stage` does, refusing one no row can be made of.

        Raises:
            UnreadableMessageError: when the message has no immutable id, or building its rows
                failed on a field of a shape Graph does not document.
            EmailDeletedError: when the email or this mailbox item carries a tombstone.
            StorageLimitError: when one of its rows cannot be stored.
        """
        if not message_item_id(kept.message):
            msg = f"kept message {position} of the page has no immutable id; no row is keyed"
            raise UnreadableMessageError(msg)
        try:
            return self._stage(
                tenant_id, user_id, connection, kept, deleted=deleted, position=position
            )
        # NOTE: one message must never block its mailbox: a shape the row builders do not
        # expect fails that message alone (Table and Blob errors are SyncErrors and still rise).
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            msg = f"kept message {position} of the page has a field no row can hold"
            raise UnreadableMessageError(msg) from error

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
        """Write a kept message's holder and email rows; return its mailbox item to write.

        Raises:
            EmailDeletedError: when the email or this mailbox item carries a tombstone.
        """
        message, item_id = kept.message, message_item_id(kept.message)
        # A message reusing another email's Message-ID is stored apart, as one without it.
        apart = email_key(tenant_id, None, connection, item_id)
        for key in (
            email_key(tenant_id, internet_message_id(message), connection, item_id),
            apart,
        ):
            if item_id in deleted or self._tombstoned(tenant_id, key):
                msg = f"email {key} was deleted in the product"
                raise EmailDeletedError(msg)
            holder, item = self._links(tenant_id, user_id, connection, key, kept)
            try:
                existing, row = self._write_email(
                    tenant_id,
                    key,
                    message,
                    participants=kept.participants,
                    company_ids=kept.company_ids,
                    copies_only=key != apart,
                    holder=holder,
                    hidden=kept.bcc_company_ids,
                )
            except LookAlikeError:
                continue
            break
        guard_entity(ITEMS, item)
        return _Staged(position, key, item_id, row, message, existing is None, item)

    def _index_rows(
        self,
        tenant_id: str,
        staged: Sequence[_Staged],
        outcomes: list[Outcome],
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
                index_row_key(str(row["sortTime"]), key),
                summary_row(key, row, self._shown(row)),
            )
            rows = [
                (INDEX, {"PartitionKey": table_key(tenant_id, company), "RowKey": index_key})
                for company in sorted(self._company_ids(row))
            ]
            rows.append(
                (INBOX, {"PartitionKey": inbox_partition(tenant_id, key), "RowKey": index_key})
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
        index_key = index_row_key(str(row["sortTime"]), key)
        for company_id in self._company_ids(row):
            self._tables.delete(INDEX, table_key(tenant_id, company_id), index_key)
        self._tables.delete(INBOX, inbox_partition(tenant_id, key), index_key)
        self.delete_email(tenant_id, key)
        self._tables.delete(ITEMS, connection, table_key(entry.item_id))
        msg = f"email {key} was deleted in the product while it was saved"
        raise EmailDeletedError(msg)

    def _links(
        self, tenant_id: str, user_id: str, connection: str, key: str, kept: KeptMessage
    ) -> tuple[Entity, Entity]:
        """Return the holder row and the mailbox item row of a kept message, not yet written.

        The holder row keeps what only this user's copy shows: its Bcc list and the companies
        only those Bcc recipients reach.
        """
        message = kept.message
        item_id, folder = message_item_id(message), text(message.get("parentFolderId"))
        holder = {
            "PartitionKey": email_partition(tenant_id, key),
            "RowKey": table_key(key, user_id),
            "emailKey": key,
            "userId": user_id,
            "connection": connection,
            "itemId": item_id,
            "folderId": folder,
            "bcc": holder_bcc(message),
            "bccCompanyIds": json.dumps(sorted(kept.bcc_company_ids)),
        }
        item = {
            "PartitionKey": connection,
            "RowKey": table_key(item_id),
            "emailKey": key,
            "itemId": item_id,
            "userId": user_id,
            "folderId": folder,
            # A purge releases only what the mailbox received before it was asked for.
            "receivedAt": received_at(message),
            # A folder's full round looks again at the items it did not save (see removals).
            "savedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        return holder, item
