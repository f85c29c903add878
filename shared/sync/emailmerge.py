"""One ``emails`` row for all copies of an email, and none shared with a look-alike.

Every mailbox that holds an email has its own copy of it, and the copies of a tenant share one
row, keyed by the ``internetMessageId``. Holders syncing at the same moment all write that row,
so each write is conditional on the row it read, and a writer that loses the race reads again
and merges. Anyone on a thread can read a Message-ID (replies carry it in ``In-Reply-To``), so a
message that reuses one with another sender or sent time is refused the row
(:class:`LookAlikeError`); the store then keeps it apart, keyed by its mailbox item, as it keeps
a message without a Message-ID.

Copies of one email can differ (a gateway rewriting links, a tag added to the subject), and
anyone who received it can send a message with its Message-ID, sender and sent time, which is
all a copy is compared by. So the first stored copy decides what every reader sees: a later
copy only adds its holder and its companies, and only the mailbox item that stored the first
copy may update the content.

Known limitations: a later copy's companies are still added, so a message reusing an email's
Message-ID, sender and sent time lists the first copy's content under the companies of its own
recipients. The content readers see is the first synced copy's, which for an email sent inside
the tenant may be a recipient's copy rather than the sender's.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tables import ETAG
from shared.errors import ConflictError, SyncError, TransientError
from shared.sync.emailrows import (
    BLOB_SUFFIX,
    EMAILS,
    HOLDERS,
    ITEMS,
    OVERFLOW_FIELDS,
    EmailRows,
    copy_fingerprint,
    email_partition,
    email_row,
)
from shared.sync.jobs import instant

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shared.adapters.tables import Entity
    from shared.matching.addresses import Address

SAVE_ATTEMPTS = 5


class LookAlikeError(SyncError):
    """Raised inside the store when a message reuses the Message-ID of a different email."""


class EmailMerging(EmailRows):
    """Writes the shared row of an email, merging the copies of its holders."""

    def _write_email(
        self,
        tenant_id: str,
        key: str,
        message: Mapping[str, Any],
        *,
        participants: Sequence[Address],
        company_ids: frozenset[str],
        holder: Entity,
        hidden: frozenset[str] = frozenset(),
        copies_only: bool = True,
    ) -> tuple[Entity | None, Entity]:
        """Write an email row, merging with a copy another mailbox's worker writes at once.

        The first writer creates the row; every later one replaces it only if unchanged since
        it read it, keeping the first sort time and every company either copy matched. A lost
        race re-reads and merges again, so two holders syncing one email at the same moment
        leave one row, one sort time and so one index row per company. What readers see of the
        email (subject, body, preview, sender, recipients) is the first stored copy's: a later
        copy only adds its companies, so no holder's copy rewrites what the others read; only
        the mailbox item that stored it first may update it.

        A stored row is only merged with a copy of the same email: same sender and sent time
        (:func:`copy_fingerprint`). A message that merely reuses its Message-ID is refused, so
        it can neither overwrite the row nor make its holder one of the email's. ``copies_only``
        is False for a row keyed by the mailbox item itself, which only that item writes.
        ``holder``, the saving user's holder row, is written before the email row. ``hidden``
        are the companies only this copy's Bcc recipients reach: the row counts them among its
        companies (for the indexes) but not among those every reader is shown.

        Returns:
            The row as it was before (``None`` when this write created it), and as written.

        Raises:
            TransientError: when the row kept changing under this writer.
        """
        partition = email_partition(tenant_id, key)
        existing = self._tables.get(EMAILS, partition, key)
        fingerprint = copy_fingerprint(message)
        linked = False
        for _ in range(SAVE_ATTEMPTS):
            if copies_only and existing and existing.get("fingerprint", fingerprint) != fingerprint:
                if linked:
                    self._unlink_stray(holder)
                msg = f"email {key} is held by another email with the same Message-ID"
                raise LookAlikeError(msg)
            if not linked:
                # NOTE: the holder row goes before the email row. A removal reads the email's
                # ETag before its holders, so a holder it misses is one whose email write
                # comes later and fails the removal's conditional delete (EmailLinks._claim).
                self._tables.upsert(HOLDERS, holder)
                linked = True
            row = self._merged_row(
                tenant_id,
                key,
                message,
                existing,
                participants=participants,
                company_ids=company_ids,
                fingerprint=fingerprint,
                source=_source(holder) if copies_only else None,
                hidden=hidden,
            )
            entity = self._overflow(tenant_id, key, row)
            try:
                if existing is None:
                    self._tables.create(EMAILS, entity)
                else:
                    self._tables.update(EMAILS, entity, etag=existing[ETAG])
            except ConflictError:
                if existing is None:
                    self._drop_blobs_of(entity)
                existing = self._tables.get(EMAILS, partition, key)
                continue
            return existing, row
        msg = f"email {key} changed under every attempt to save it"
        raise TransientError(msg)

    def _merged_row(
        self,
        tenant_id: str,
        key: str,
        message: Mapping[str, Any],
        existing: Entity | None,
        *,
        participants: Sequence[Address],
        company_ids: frozenset[str],
        fingerprint: str,
        source: str | None,
        hidden: frozenset[str],
    ) -> Entity:
        """Return the email row a copy writes: the stored one with its companies added.

        ``source`` names the mailbox item writing the copy; ``None`` lets it rewrite the row.
        """
        companies = company_ids | self._company_ids(existing)
        shown = (company_ids - hidden) | self._open_company_ids(existing)
        if existing is not None and source is not None and existing.get("source") != source:
            dropped = {ETAG, "companyIds" + BLOB_SUFFIX, "openCompanyIds" + BLOB_SUFFIX}
            kept = {k: v for k, v in existing.items() if k not in dropped}
            return {
                **kept,
                "companyIds": json.dumps(sorted(companies)),
                "openCompanyIds": json.dumps(sorted(shown)),
            }
        sort_time = str(existing["sortTime"]) if existing else _sort_time(message)
        row = email_row(
            tenant_id,
            key,
            message,
            participants=participants,
            companies=companies,
            sort_time=sort_time,
            fingerprint=fingerprint,
        )
        row["source"] = source or ""
        row["openCompanyIds"] = json.dumps(sorted(shown))
        # Blobs of a row created again after a removal get new names, so the removal's
        # deletion of the old row's blobs cannot take the new row's.
        row["generation"] = str(existing.get("generation", "")) if existing else uuid.uuid4().hex
        return row

    def _drop_blobs_of(self, entity: Entity) -> None:
        """Delete the blobs a row that was never stored moved its fields to."""
        for name in OVERFLOW_FIELDS:
            blob_name = entity.get(name + BLOB_SUFFIX)
            if blob_name:
                self._blobs.delete(str(blob_name))

    def _unlink_stray(self, holder: Entity) -> None:
        """Delete a holder row written for an email a look-alike took first, unless held."""
        where = "PartitionKey eq @pk and emailKey eq @key"
        parameters = {"pk": holder["connection"], "key": holder["emailKey"]}
        if not any(self._tables.query(ITEMS, where, parameters)):
            self._tables.delete(HOLDERS, str(holder["PartitionKey"]), str(holder["RowKey"]))


def _source(holder: Entity) -> str:
    """Name the mailbox item a holder row links, without its ids."""
    text = f"{holder['connection']}\n{holder['itemId']}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _sort_time(message: Mapping[str, Any]) -> str:
    """Order by when the mailbox received it: the sender chooses the sent date, not Exchange.

    A date in the future is clamped to now, so no message can pin itself to the top.
    """
    moment = instant(message.get("receivedDateTime") or message.get("sentDateTime"))
    return min(moment, datetime.now(UTC)).isoformat(timespec="seconds")
