"""The outbox: emails users send from their own mailbox, recorded, queued and tracked.

``POST /api/me/outbox`` checks the email whole (recipients, size against the tenant's limit, a
body Graph can take, a reply only to an email the caller may read, automatic emails only for
callers whose roles allow them) before anything is written or Graph is called. The checked email
goes to a blob, one row in ``outbox`` records where it stands, and the ``outbox`` queue gets a
job; the answer is 202 with the item's status URL. A reply (``replyTo``, the product's id of
an email) to an email in the caller's own mailbox is drafted in its thread. See
:mod:`shared.sending.worker` for what the worker does with it. A queued automatic email can be
cancelled.

Rows live in the tenant's partition, keyed by a random 32-hex-digit id; a row is only ever
rewritten with its ETag, so a cancel and a worker racing on one item cannot both win.

Known limitations: a reply to an email the caller may read but does not hold (seen through
their portfolio only) is sent as a new message outside the thread.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.access.permissions import Workflow
from shared.adapters.queues import OUTBOX_QUEUE
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.errors import ConflictError, InvalidJobError, NotFoundError, ValidationError
from shared.sending.message import Kind, encode_email, parse_email
from shared.sync.connections import ACTIVE, MAIL
from shared.sync.emailrows import HOLDERS, email_partition

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from shared.access.auth import Caller
    from shared.access.permissions import PermissionService
    from shared.adapters.blobs import BlobBodyStore
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory.service import DirectoryService
    from shared.read.service import ReadService
    from shared.sending.message import OutgoingEmail
    from shared.sync.connectionstore import ConnectionStore

logger = logging.getLogger(__name__)

OUTBOX = "outbox"
PAYLOAD_PREFIX = "outbox"


class OutboxState(StrEnum):
    """Where an outbox item stands; each Graph step is recorded before the next one starts."""

    QUEUED = "queued"
    DRAFT_CREATED = "draftCreated"
    ATTACHMENTS_UPLOADED = "attachmentsUploaded"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({OutboxState.SENT, OutboxState.FAILED, OutboxState.CANCELLED})


def now_iso(clock: Callable[[], datetime]) -> str:
    """Return the clock's time as ISO 8601 text with seconds."""
    return clock().astimezone(UTC).isoformat(timespec="seconds")


def payload_name(tenant_id: str, item_id: str) -> str:
    """Return the blob name of an outbox item's checked email."""
    return f"{PAYLOAD_PREFIX}/{table_key(tenant_id)}/{item_id}.json"


def item_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return an outbox item's status as the API answers it."""
    return {
        "id": row["RowKey"],
        "state": row.get("state"),
        "kind": row.get("kind"),
        "sequenceId": row.get("sequenceId") or None,
        "replyTo": row.get("replyTo") or None,
        "createdAt": row.get("createdAt"),
        "updatedAt": row.get("updatedAt"),
        "notBefore": row.get("notBefore") or None,
        "internetMessageId": row.get("internetMessageId") or None,
        "emailId": row.get("emailId") or None,
        "error": row.get("error") or None,
    }


def _valid_id(item_id: str) -> bool:
    return len(item_id) == 32 and all(ch in "0123456789abcdef" for ch in item_id)


class OutboxService:
    """Takes emails to send, answers their status, cancels queued automatic ones."""

    def __init__(
        self,
        *,
        tables: TableEntityStore,
        blobs: BlobBodyStore,
        queue: JobQueue,
        directory: DirectoryService,
        permissions: PermissionService,
        reader: ReadService,
        connections: ConnectionStore,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._tables = tables
        self._blobs = blobs
        self._queue = queue
        self._directory = directory
        self._permissions = permissions
        self._reader = reader
        self._connections = connections
        self._clock = clock or (lambda: datetime.now(UTC))

    def submit(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check an email, record it as queued and queue it; return its status.

        Raises:
            ValidationError: naming the field that breaks a rule (``TooLargeError`` for size).
            ForbiddenError: when the caller may not send automatic emails or is not a user.
            ConflictError: when the caller has no active mail connection.
        """
        self._directory.require_member(caller)
        email = parse_email(body)
        if email.kind is Kind.AUTOMATIC:
            self._permissions.require_workflow(caller, Workflow.AUTOMATIC_EMAILS)
        tenant = self._directory.get_tenant(caller.tenant_id)
        if tenant is None:
            message = f"tenant {caller.tenant_id} is not set up"
            raise NotFoundError(message)
        email.check_size(tenant.send_size_limit)
        reply_item = ""
        if email.reply_to is not None:
            reply_item = self._reply_item(caller, email.reply_to)
        connection = self._connections.get(caller.tenant_id, caller.user_id, MAIL)
        if connection is None or connection.state != ACTIVE:
            message = "no active mail connection; connect your mailbox first"
            raise ConflictError(message)

        row = record_item(
            self._tables,
            self._blobs,
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            email=email,
            now=now_iso(self._clock),
        )
        item_id = str(row["RowKey"])
        if reply_item:
            row["replyItemId"] = reply_item
            self._tables.upsert(OUTBOX, row)
        self._queue.send(OUTBOX_QUEUE, outbox_job(caller.tenant_id, item_id))
        extra = {"tenant_id": caller.tenant_id, "outbox_id": item_id}
        logger.info("outbox item queued", extra={**extra, "recipients": email.recipient_count})
        return item_json(row)

    def _reply_item(self, caller: Caller, email_id: str) -> str:
        """Check the caller may read the email; return their mailbox's id of it, or ``""``."""
        view = self._permissions.view_for(caller)
        try:
            self._reader.readable_email(caller, view, email_id)
        except NotFoundError as error:
            field = "replyTo"
            raise ValidationError(field, "must be the id of an email you may read") from error
        holder = self._tables.get(
            HOLDERS,
            email_partition(caller.tenant_id, email_id),
            table_key(email_id, caller.user_id),
        )
        return str(holder.get("itemId") or "") if holder else ""

    def get(self, caller: Caller, item_id: str) -> dict[str, Any]:
        """Return the status of one of the caller's outbox items.

        Raises:
            NotFoundError: when there is no such item of the caller.
        """
        return item_json(self._own_row(caller, item_id))

    def _own_row(self, caller: Caller, item_id: str) -> Entity:
        row = None
        if _valid_id(item_id):
            row = self._tables.get(OUTBOX, table_key(caller.tenant_id), item_id)
        if row is None or row.get("userId") != caller.user_id:
            message = f"outbox item {item_id} not found"
            raise NotFoundError(message)
        return row

    def cancel(self, caller: Caller, item_id: str) -> dict[str, Any]:
        """Cancel a queued automatic email; return its status.

        Raises:
            NotFoundError: when there is no such item of the caller.
            ConflictError: when it is manual, or its sending has begun or ended.
        """
        row = self._own_row(caller, item_id)
        queued = row.get("state") == OutboxState.QUEUED and not row.get("draftRequested")
        if row.get("kind") != Kind.AUTOMATIC or not queued:
            # Once the worker asked Graph for the draft, only the worker knows whether one
            # exists; cancelling then could leave it in the user's Drafts.
            message = f"outbox item {item_id} is not a queued automatic email"
            raise ConflictError(message)
        changed = {**row, "state": str(OutboxState.CANCELLED), "updatedAt": now_iso(self._clock)}
        self._tables.update(OUTBOX, changed, etag=row[ETAG])
        self._blobs.delete(payload_name(caller.tenant_id, item_id))
        logger.info("outbox item cancelled", extra={"outbox_id": item_id})
        return item_json(changed)


def record_item(
    tables: TableEntityStore,
    blobs: BlobBodyStore,
    *,
    tenant_id: str,
    user_id: str,
    email: OutgoingEmail,
    now: str,
) -> Entity:
    """Write a checked email's payload blob and its ``queued`` row; return the row."""
    item_id = uuid.uuid4().hex
    blobs.put_text(payload_name(tenant_id, item_id), encode_email(email), "application/json")
    row: Entity = {
        "PartitionKey": table_key(tenant_id),
        "RowKey": item_id,
        "userId": user_id,
        "kind": str(email.kind),
        "sequenceId": email.sequence_id or "",
        "replyTo": email.reply_to or "",
        "state": str(OutboxState.QUEUED),
        "attachmentCount": len(email.attachments),
        "attachmentsDone": 0,
        "createdAt": now,
        "updatedAt": now,
    }
    tables.create(OUTBOX, row)
    return row


def outbox_job(tenant_id: str, item_id: str) -> dict[str, str]:
    """Return the queue job of an outbox item."""
    return {"kind": "outbox", "tenant": tenant_id, "id": item_id}


def parse_job(message: Mapping[str, Any]) -> tuple[str, str]:
    """Return the tenant and item id of an outbox job.

    Raises:
        InvalidJobError: when the message is not an outbox job.
    """
    tenant, item = message.get("tenant"), message.get("id")
    if message.get("kind") != "outbox" or not isinstance(tenant, str) or not isinstance(item, str):
        msg = "outbox job needs kind 'outbox', a tenant and an id"
        raise InvalidJobError(msg)
    if not 0 < len(tenant) <= 64 or not _valid_id(item):
        msg = "outbox job ids have the wrong shape"
        raise InvalidJobError(msg)
    return tenant, item
