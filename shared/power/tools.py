"""Power tools: take data out of the product. None of them touches the user's Outlook.

- **Delete one email**: gone for the whole tenant, with tombstones (by ``internetMessageId``
  and by every holder's immutable id) so no mailbox syncs it back. A holder of the email or an
  admin may delete it; anyone else who may read it is refused (403), and one who may not read
  it gets 404 like an unknown id.
- **Delete one calendar event**: the same for one synced meeting occurrence, with tombstones by
  its tenant-wide key and by every holder's calendar item id, so no calendar syncs it back.
- **Revoke a connection** (mail or calendar): the sealed token is destroyed and the connection
  is ``revoked``; queued jobs end without a Graph call, a job in flight stores no further page,
  and a later consent starts from scratch. Stored data stays.
- **Purge**: everything synced from one mailbox (or calendar) goes, as a queued job
  (:mod:`shared.power.purge`); emails other users also hold stay, without this user. Mail
  received before the purge does not sync again from that mailbox, nor do events created in
  that calendar before it (see :mod:`shared.sync.eventkeeper`).

Every user may use them on their own data; on another user of the tenant only with the
``powerToolsOnOthers`` workflow (admins always have it). The target must be a registered user
of the caller's tenant, so another tenant's user answers 404 like an unknown one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.access.permissions import Workflow
from shared.errors import ForbiddenError, NotFoundError, ValidationError
from shared.power.purge import require_job
from shared.sync.connections import KINDS

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.access.auth import Caller
    from shared.access.permissions import PermissionService
    from shared.directory.service import DirectoryService
    from shared.power.purge import PurgeJob, PurgeJobs
    from shared.read.events import EventReadService
    from shared.read.service import ReadService
    from shared.sync.connections import Connection
    from shared.sync.connectionstore import ConnectionStore
    from shared.sync.eventstore import EventStore
    from shared.sync.store import EmailStore

logger = logging.getLogger(__name__)


class PowerTools:
    """Deletes, revokes and purges on behalf of users and admins."""

    def __init__(
        self,
        *,
        directory: DirectoryService,
        permissions: PermissionService,
        reader: ReadService,
        connections: ConnectionStore,
        emails: EmailStore,
        purges: PurgeJobs,
        clock: Callable[[], datetime] | None = None,
        events: EventStore | None = None,
        event_reader: EventReadService | None = None,
    ) -> None:
        self._events = events
        self._event_reader = event_reader
        self._directory = directory
        self._permissions = permissions
        self._reader = reader
        self._connections = connections
        self._emails = emails
        self._purges = purges
        self._clock = clock or (lambda: datetime.now(UTC))

    def delete_email(self, caller: Caller, email_id: str) -> int:
        """Delete one email for the whole tenant; return how many mailboxes held it.

        Raises:
            NotFoundError: when the caller may not read such an email (or none exists).
            ForbiddenError: when the caller may read it but neither holds it nor is an admin.
        """
        view = self._permissions.view_for(caller)
        row = self._reader.readable_email(caller, view, email_id)
        key = str(row["RowKey"])
        holders = self._emails.holders(caller.tenant_id, key)
        if not caller.is_admin and all(h.get("userId") != caller.user_id for h in holders):
            message = "only a holder of this email or an admin may delete it"
            raise ForbiddenError(message)
        count = self._emails.delete_email(caller.tenant_id, key)
        logger.info("email deleted", extra={"tenant_id": caller.tenant_id, "holders": count})
        return count

    def delete_event(self, caller: Caller, event_id: str) -> int:
        """Delete one calendar event for the whole tenant; return how many calendars held it.

        Raises:
            NotFoundError: when the caller may not read such an event (or none exists).
            ForbiddenError: when the caller may read it but neither holds it nor is an admin.
        """
        if self._events is None or self._event_reader is None:
            message = "calendar events are not available here"
            raise NotFoundError(message)
        view = self._permissions.view_for(caller)
        row = self._event_reader.readable_event(caller, view, event_id)
        key = str(row["RowKey"])
        holders = self._events.holders(caller.tenant_id, key)
        if not caller.is_admin and all(h.get("userId") != caller.user_id for h in holders):
            message = "only a holder of this event or an admin may delete it"
            raise ForbiddenError(message)
        count = self._events.delete_event(caller.tenant_id, key)
        logger.info("event deleted", extra={"tenant_id": caller.tenant_id, "holders": count})
        return count

    def revoke(self, caller: Caller, kind: str, user_id: str | None = None) -> Connection:
        """Revoke the caller's (or another user's) connection of one kind.

        Raises:
            ValidationError: when the kind is not one the product connects.
            ForbiddenError: when the caller may not act on that user.
            NotFoundError: when the user or their connection of that kind does not exist.
        """
        target = self.target(caller, user_id)
        revoked = self._connections.revoke(caller.tenant_id, target, _kind(kind))
        if revoked is None:
            message = f"no {kind} connection for this user"
            raise NotFoundError(message)
        logger.info("connection revoked", extra={"tenant_id": caller.tenant_id, "kind": kind})
        return revoked

    def start_purge(self, caller: Caller, kind: str, user_id: str | None = None) -> PurgeJob:
        """Start removing everything synced from the user's ``kind``, or return the running one.

        Raises:
            ValidationError: when the kind is not one the product connects.
            ForbiddenError: when the caller may not act on that user.
            NotFoundError: when the user is not a registered user of the tenant.
        """
        target = self.target(caller, user_id)
        kind = _kind(kind)
        connection = self._connections.get(caller.tenant_id, target, kind)
        if connection is not None:
            # Before the job starts: whatever the mailbox received until now never syncs back.
            self._connections.mark_purged(connection, self._clock())
        return self._purges.start(caller.tenant_id, target, kind, caller.user_id)

    def purge_status(self, caller: Caller, job_id: str, user_id: str | None = None) -> PurgeJob:
        """Return a purge job of the caller (or of a user they may act on).

        Raises:
            ForbiddenError: when the caller may not act on that user.
            NotFoundError: when there is no such job for that user.
        """
        target = self.target(caller, user_id)
        job = self._purges.get(caller.tenant_id, job_id)
        if job is not None and job.user_id != target:
            job = None
        return require_job(job, job_id)

    def target(self, caller: Caller, user_id: str | None) -> str:
        """Return whom an action is for: the caller, or a user they may use power tools on.

        Raises:
            ForbiddenError: when the caller is not a user of the tenant, or names another user
                without the ``powerToolsOnOthers`` workflow.
            NotFoundError: when the named user is not a registered user of the tenant.
        """
        view = self._permissions.view_for(caller)
        if user_id is None or user_id.strip().lower() == caller.user_id.lower():
            return caller.user_id
        if not view.allows_workflow(Workflow.POWER_TOOLS_ON_OTHERS):
            message = f"your roles do not allow the {Workflow.POWER_TOOLS_ON_OTHERS} workflow"
            raise ForbiddenError(message)
        user = self._directory.get_user(caller.tenant_id, user_id)
        if user is None:
            message = f"user {user_id} not found in this tenant"
            raise NotFoundError(message)
        return user.user_id


def _kind(kind: str) -> str:
    if kind not in KINDS:
        field = "kind"
        raise ValidationError(field, f"must be one of {', '.join(KINDS)}")
    return kind
