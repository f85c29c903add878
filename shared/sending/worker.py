"""The outbox worker: one queued email through draft, attachments and send, exactly once.

Each delivery of an ``outbox`` job resumes from the state its row records:

- ``queued``: an automatic email first waits out do-not-disturb hours and the sender's daily
  limit (see :mod:`shared.sending.pacing`); then the row notes that a draft is asked for, the
  draft is created (``POST /me/messages``) carrying the outbox id in an ``x-outbox-id`` header,
  and its id is recorded as ``draftCreated``. A reply to an email the sender holds is drafted with
  ``createReply`` on their copy, so it joins the thread. A resumed delivery that finds the
  note looks for that draft in Drafts first, so a crash right after Graph made it leaves no
  second draft.
- ``draftCreated``: attachments are added in order, inline under 3 MB and through an upload
  session from 3 MB; each one is counted on the row once added. A resumed delivery asks Graph
  how many the draft already holds, so one added just before a crash is not added twice. Then
  ``attachmentsUploaded``.
- ``attachmentsUploaded``: the draft is read back first. If it is no longer a draft, the send
  went through before a crash kept it from being recorded, so it is recorded as ``sent``
  without sending again; otherwise ``POST /send``, then ``sent``.

Each delivery holds one of the sender's mailbox request slots (:mod:`shared.sync.leases`), so
sending never adds a fifth request in flight beside the mailbox's sync jobs; with none free, the
job is sent again a few seconds later. Graph refusing a step for good marks the item ``failed``
and deletes its draft. Throttling puts
the job back on the queue after ``Retry-After``; other transient failures let the host retry,
and a job that keeps failing lands in ``outbox-poison``, whose sweep marks it ``failed``.

Graph, the tenant's settings and tokens come in through the protocols of
:mod:`shared.sending.ports`.

Known limitations: an email whose sender must consent again fails at once instead of waiting
for the new consent. An upload session cut short starts over.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.queues import OUTBOX_QUEUE
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.errors import (
    AccessTokenRejectedError,
    ConflictError,
    GraphRequestError,
    NotFoundError,
    ReauthRequiredError,
    SyncError,
    ThrottledError,
    TransientError,
)
from shared.sending.message import (
    INLINE_LIMIT,
    MARKER_HEADER,
    Kind,
    OutgoingEmail,
    decode_email,
)
from shared.sending.outbox import (
    FINAL_STATES,
    OUTBOX,
    OutboxState,
    now_iso,
    outbox_job,
    parse_job,
    payload_name,
)
from shared.sending.pacing import SendPacer
from shared.sync.connections import MAIL, connection_key
from shared.sync.emailrows import email_key
from shared.sync.leases import MailboxGate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from shared.adapters.blobs import BlobBodyStore
    from shared.adapters.queues import JobQueue
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.sending.ports import SendGraph, TenantSettings, TokenSource

logger = logging.getLogger(__name__)


class CancelledError(SyncError):
    """Raised inside the worker when the item was cancelled while a step ran."""


class OutboxWorker:
    """Moves outbox items through their states; see the module docstring."""

    def __init__(
        self,
        *,
        tables: TableEntityStore,
        blobs: BlobBodyStore,
        queue: JobQueue,
        graph: SendGraph,
        tokens: TokenSource,
        settings: TenantSettings,
        clock: Callable[[], datetime] | None = None,
        gate: MailboxGate | None = None,
    ) -> None:
        self._gate = gate or MailboxGate(tables, queue)
        self._tables = tables
        self._blobs = blobs
        self._queue = queue
        self._graph = graph
        self._tokens = tokens
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pacer = SendPacer(
            tables=tables,
            queue=queue,
            graph=graph,
            settings=settings,
            clock=self._clock,
            save=self._save,
        )

    def run(self, message: Mapping[str, Any]) -> None:
        """Work one delivery of an outbox job from the state its row records.

        Raises:
            InvalidJobError: when the message is not an outbox job.
            TransientError: when storage or Graph failed in a way a retry may fix.
        """
        tenant_id, item_id = parse_job(message)
        row = self._tables.get(OUTBOX, table_key(tenant_id), item_id)
        if row is None or row.get("state") in FINAL_STATES:
            if row is not None:
                # A cancel or failure may have stopped before its payload went: it goes now.
                self._blobs.delete(payload_name(tenant_id, item_id))
            extra = {"tenant": tenant_id, "outbox_id": item_id}
            logger.info("outbox job skipped: unknown or finished", extra=extra)
            return
        with self._gate.request_slot(tenant_id, str(row["userId"]), OUTBOX_QUEUE, message) as ok:
            # Without a free request slot of the mailbox the job was sent again for later.
            if ok:
                self._run_row(tenant_id, item_id, row)

    def _run_row(self, tenant_id: str, item_id: str, row: Entity) -> None:
        """Advance one outbox item holding a request slot of its sender's mailbox."""
        token = ""
        user_id = str(row["userId"])
        try:
            token = self._tokens(tenant_id, user_id)
            try:
                self._advance(tenant_id, row, token)
            except AccessTokenRejectedError:
                # Graph refused a token MSAL still thought valid: refresh once and resume from
                # the state recorded so far, which never repeats a step that went through.
                token = self._tokens(tenant_id, user_id, force_refresh=True)
                fresh = self._tables.get(OUTBOX, table_key(tenant_id), item_id)
                if fresh is not None and fresh.get("state") not in FINAL_STATES:
                    self._advance(tenant_id, fresh, token)
        except ThrottledError as error:
            delay = error.delay_s
            self._queue.send(OUTBOX_QUEUE, outbox_job(tenant_id, item_id), delay_s=delay)
            logger.info("outbox job throttled", extra={"outbox_id": item_id, "delay_s": delay})
        except CancelledError:
            self._cancelled(tenant_id, item_id)
        except GraphRequestError as error:
            self._fail(tenant_id, item_id, token, error.code)
        except (ReauthRequiredError, AccessTokenRejectedError) as error:
            self._fail(tenant_id, item_id, token, getattr(error, "code", "token_rejected"))
        except NotFoundError:
            # The email replied to, or the draft, is gone from the mailbox: no retry brings it.
            self._fail(tenant_id, item_id, token, "not_found")

    def fail(self, message: Mapping[str, Any]) -> None:
        """Mark a poisoned outbox job ``failed`` and delete its draft when it can."""
        tenant_id, item_id = parse_job(message)
        row = self._tables.get(OUTBOX, table_key(tenant_id), item_id)
        if row is None or row.get("state") in FINAL_STATES:
            return
        try:
            token = self._tokens(tenant_id, str(row["userId"]))
        except SyncError:
            token = ""
        self._fail(tenant_id, item_id, token, "poisoned")

    def _advance(self, tenant_id: str, row: Entity, token: str) -> None:
        email: OutgoingEmail | None = None
        if row["state"] == OutboxState.QUEUED:
            email = self._email(tenant_id, row)
            automatic = row.get("kind") == Kind.AUTOMATIC
            if automatic and self._pacer.postpone(tenant_id, row, token, email):
                return
            row = self._create_draft(tenant_id, row, token, email)
        if row["state"] == OutboxState.DRAFT_CREATED:
            row = self._add_attachments(tenant_id, row, token, email)
        if row["state"] == OutboxState.ATTACHMENTS_UPLOADED:
            self._send(tenant_id, row, token)

    def _email(self, tenant_id: str, row: Entity) -> OutgoingEmail:
        text = self._blobs.get_text(payload_name(tenant_id, str(row["RowKey"])))
        if text is None:
            message = f"outbox item {row['RowKey']} has no stored email"
            raise TransientError(message)
        return decode_email(text)

    def _create_draft(
        self, tenant_id: str, row: Entity, token: str, email: OutgoingEmail
    ) -> Entity:
        item_id = str(row["RowKey"])
        created = None
        if row.get("draftRequested"):
            # A crash after Graph made the draft but before its id was recorded: adopt it.
            created = self._graph.find_draft(token, MARKER_HEADER, item_id)
        if created is None:
            row = self._save(row, {"draftRequested": True})
            draft = email.marked_draft(item_id)
            original = str(row.get("replyItemId") or "")
            if original:
                created = self._graph.create_reply(token, original, draft)
            else:
                created = self._graph.create_draft(token, draft)
        draft_id = str(created["id"])
        imid = str(created.get("internetMessageId") or "")
        connection = connection_key(tenant_id, str(row["userId"]), MAIL)
        changes = {
            "state": str(OutboxState.DRAFT_CREATED),
            "draftId": draft_id,
            "internetMessageId": imid,
            "emailId": email_key(tenant_id, imid, connection, draft_id),
        }
        try:
            return self._save(row, changes)
        except CancelledError:
            self._graph.delete_message(token, draft_id)
            raise

    def _add_attachments(
        self, tenant_id: str, row: Entity, token: str, email: OutgoingEmail | None
    ) -> Entity:
        total, draft_id = int(row.get("attachmentCount") or 0), str(row["draftId"])
        done = int(row.get("attachmentsDone") or 0)
        if done < total:
            # A crash between adding an attachment and counting it would add it twice.
            done = max(done, self._graph.attachment_count(token, draft_id))
        if done < total:
            email = email or self._email(tenant_id, row)
            for index in range(done, total):
                file = email.attachments[index]
                add = (
                    self._graph.add_inline_attachment
                    if len(file.content) < INLINE_LIMIT
                    else self._graph.upload_attachment
                )
                add(token, draft_id, file.name, file.content_type, file.content)
                row = self._save(row, {"attachmentsDone": index + 1})
        return self._save(row, {"state": str(OutboxState.ATTACHMENTS_UPLOADED)})

    def _send(self, tenant_id: str, row: Entity, token: str) -> None:
        draft_id = str(row["draftId"])
        try:
            current = self._graph.get_message(token, draft_id)
        except NotFoundError as error:
            code = "draftMissing"
            msg = "the draft is gone"
            raise GraphRequestError(msg, 404, code) from error
        # A send that went through just before a crash: never send it again.
        if current.get("isDraft", True):
            self._graph.send(token, draft_id)
        self._save(row, {"state": str(OutboxState.SENT), "sentAt": now_iso(self._clock)})
        self._blobs.delete(payload_name(tenant_id, str(row["RowKey"])))
        extra = {"outbox_id": row["RowKey"], "attachments": row.get("attachmentCount", 0)}
        logger.info("outbox item sent", extra=extra)

    def _save(self, row: Entity, changes: Mapping[str, Any]) -> Entity:
        """Rewrite the row with its ETag; a cancel that landed first raises CancelledError."""
        updated = {**row, **changes, "updatedAt": now_iso(self._clock)}
        try:
            updated[ETAG] = self._tables.update(OUTBOX, updated, etag=row[ETAG])
        except ConflictError:
            current = self._tables.get(OUTBOX, str(row["PartitionKey"]), str(row["RowKey"]))
            if current is not None and current.get("state") == OutboxState.CANCELLED:
                raise CancelledError(str(row["RowKey"])) from None
            raise
        return updated

    def _cancelled(self, tenant_id: str, item_id: str) -> None:
        self._blobs.delete(payload_name(tenant_id, item_id))
        logger.info("outbox item cancelled while in flight", extra={"outbox_id": item_id})

    def _fail(self, tenant_id: str, item_id: str, token: str, code: str) -> None:
        row = self._tables.get(OUTBOX, table_key(tenant_id), item_id)
        if row is None or row.get("state") in FINAL_STATES:
            return
        draft_id = str(row.get("draftId") or "")
        if draft_id and token and row.get("state") != OutboxState.SENT:
            try:
                self._graph.delete_message(token, draft_id)
            except NotFoundError:
                logger.debug("failed outbox item's draft already gone")
            except SyncError:
                logger.warning(
                    "failed outbox item's draft not deleted", extra={"outbox_id": item_id}
                )
        changes = {"state": str(OutboxState.FAILED), "error": code[:64]}
        self._tables.upsert(OUTBOX, {**row, **changes, "updatedAt": now_iso(self._clock)})
        self._blobs.delete(payload_name(tenant_id, item_id))
        logger.warning("outbox item failed", extra={"outbox_id": item_id, "reason": code[:64]})
