"""The audit log: who did what, to whom, when, and how it ended, for every tenant.

Every power-tool call, every change of a tenant's settings (tenant, users, companies, rules,
switches, groups, permissions), every consent granted or revoked and every sync fan-out page
given up on (actor ``system``) leaves one entry. Entries are only ever inserted: nothing in the
product updates or deletes one, and the API only lists them. An entry holds ids, an action name,
an outcome, an error code and counts; never mail content, addresses, names or tokens.

Rows live in ``auditlog``, one partition per tenant, row keys ordered newest first (inverted
milliseconds, then a random id so two entries in one millisecond never collide). A tenant's
audit volume is that of human actions, far below a partition's write target.

A trigger wraps its work in :meth:`AuditLog.audited` after authenticating the caller, so a
refusal (403, 404, 400, 409) is recorded as ``refused`` with its error code and an unexpected
failure as ``failed``, then raised as before. A target is kept only when it is shaped like an
id (letters, digits, ``.``, ``_``, ``:``, ``+``, ``-``); anything else a caller put in the path,
such as an address, is recorded as ``(not an id)``.

Known limitations: the entry is written after the action; if that write fails the action has
happened and the caller gets a 503 for it. Entries are never swept.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ReauthRequiredError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from shared.access.auth import Caller
    from shared.adapters.tables import Entity, TableEntityStore

logger = logging.getLogger(__name__)

NOT_AN_ID = "(not an id)"
"""What a target that is not shaped like an id is recorded as."""
_ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,255}")

AUDIT = "auditlog"
SYSTEM_ACTOR = "system"
"""The ``actorId`` of entries the product writes on its own, for no caller."""
_NEVER_MS = 9_999_999_999_999
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Action(StrEnum):
    """Everything the audit log records."""

    TENANT_SET = "tenant.set"
    USER_SET = "user.set"
    COMPANY_CREATE = "company.create"
    COMPANY_SET = "company.set"
    COMPANY_DELETE = "company.delete"
    COMPANIES_IMPORT = "companies.import"
    PERMISSIONS_SET = "permissions.set"
    TENANT_RULE_CREATE = "tenantRule.create"
    TENANT_RULE_SET = "tenantRule.set"
    TENANT_RULE_DELETE = "tenantRule.delete"
    USER_RULE_CREATE = "userRule.create"
    USER_RULE_SET = "userRule.set"
    USER_RULE_DELETE = "userRule.delete"
    SWITCHES_SET = "switches.set"
    GROUP_SET = "group.set"
    GROUP_DELETE = "group.delete"
    CONSENT_GRANTED = "consent.granted"
    CONNECTION_REVOKE = "connection.revoke"
    FOLDERS_SET = "folders.set"
    EMAIL_DELETE = "email.delete"
    EVENT_DELETE = "event.delete"
    EMAILS_PURGE = "emails.purge"
    PURGE_START = "purge.start"
    """A purge call refused before its kind was known (bad body, unknown kind)."""
    EVENTS_PURGE = "events.purge"
    EMAIL_SEND = "email.send"
    EMAIL_SEND_CANCEL = "email.sendCancel"
    FANOUT_POISONED = "sync.fanoutPoisoned"
    """A page of a tenant's sync fan-out kept failing; its connections missed that slot."""


class Outcome(StrEnum):
    """How an audited action ended."""

    SUCCEEDED = "succeeded"
    ACCEPTED = "accepted"
    """Queued to run as a job; the job records its own end."""
    REFUSED = "refused"
    FAILED = "failed"


_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (ValidationError, "invalid_input"),
    (ForbiddenError, "forbidden"),
    (NotFoundError, "not_found"),
    (ConflictError, "conflict"),
    (ReauthRequiredError, "reauth_required"),
    (AuthenticationError, "unauthenticated"),
)


@dataclass(slots=True)
class AuditNote:
    """What an audited action learns while it runs: its target, counts, and how it ended."""

    target_user_id: str | None = None
    target_id: str | None = None
    outcome: Outcome = Outcome.SUCCEEDED
    counts: dict[str, int] = field(default_factory=dict)
    action: Action | None = None
    """The action as the call turned out to be, when only its body could say (else the one
    the call was audited as)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action."""

    entry_id: str
    at: str
    actor_id: str
    action: str
    outcome: str
    target_user_id: str | None
    target_id: str | None
    reason: str | None
    counts: Mapping[str, int]

    def as_json(self) -> dict[str, Any]:
        """Return the entry as the API lists it."""
        return {
            "id": self.entry_id,
            "at": self.at,
            "actorId": self.actor_id,
            "action": self.action,
            "outcome": self.outcome,
            "targetUserId": self.target_user_id,
            "targetId": self.target_id,
            "reason": self.reason,
            "counts": dict(self.counts),
        }


class AuditLog:
    """Appends audit entries and lists them for a tenant's admins."""

    def __init__(
        self, tables: TableEntityStore, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._tables = tables
        self._clock = clock or (lambda: datetime.now(UTC))

    def record(
        self,
        *,
        tenant_id: str,
        actor_id: str,
        action: Action,
        outcome: Outcome,
        target_user_id: str | None = None,
        target_id: str | None = None,
        reason: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> str:
        """Append one entry and return its id."""
        now = self._clock()
        millis = int(now.timestamp() * 1000)
        entry_id = f"{_NEVER_MS - millis:013d}-{uuid.uuid4().hex}"
        entity: Entity = {
            "PartitionKey": table_key(tenant_id),
            "RowKey": entry_id,
            "at": now.isoformat(timespec="milliseconds"),
            "actorId": actor_id.lower(),
            "action": str(action),
            "outcome": str(outcome),
            "targetUserId": _id_text(target_user_id.lower() if target_user_id else None),
            "targetId": _id_text(target_id),
            "reason": reason,
            "counts": json.dumps(dict(counts or {})),
        }
        self._tables.create(AUDIT, entity)
        extra = {"tenant_id": tenant_id, "action": str(action), "outcome": str(outcome)}
        logger.info("audit entry written", extra=extra)
        return entry_id

    @contextmanager
    def audited(
        self,
        caller: Caller,
        action: Action,
        *,
        target_user_id: str | None = None,
        target_id: str | None = None,
    ) -> Iterator[AuditNote]:
        """Run an action and record how it ended: succeeded, accepted, refused or failed.

        The action fills the yielded note with what it learns (its target, counts); an
        exception is recorded and raised again unchanged.
        """
        note = AuditNote(target_user_id=target_user_id, target_id=target_id)
        try:
            yield note
        except Exception as error:
            reason = next((code for kind, code in _REFUSALS if isinstance(error, kind)), None)
            outcome = Outcome.FAILED if reason is None else Outcome.REFUSED
            self._write(caller, action, note, outcome, reason or "internal")
            raise
        self._write(caller, action, note, note.outcome, None)

    def _write(
        self, caller: Caller, action: Action, note: AuditNote, outcome: Outcome, reason: str | None
    ) -> None:
        self.record(
            tenant_id=caller.tenant_id,
            actor_id=caller.user_id,
            action=note.action or action,
            outcome=outcome,
            target_user_id=note.target_user_id,
            target_id=note.target_id,
            reason=reason,
            counts=note.counts,
        )

    def entries(
        self,
        tenant_id: str,
        *,
        user_id: str | None = None,
        action: str | None = None,
        size: int,
        token: str | None,
    ) -> tuple[list[AuditEntry], str | None]:
        """Return one page of a tenant's entries, newest first, filtered by user and action.

        ``user_id`` matches entries the user did or that were done to them.

        Raises:
            ValidationError: naming ``userId`` or ``action`` when either is not one the log
                knows, or ``continuationToken`` when the token is not ours.
        """
        where = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": table_key(tenant_id)}
        if user_id is not None:
            if not _GUID.fullmatch(user_id):
                field_name = "userId"
                raise ValidationError(field_name, "must be a user id (a GUID)")
            # The SDK finds @names between spaces, so the brackets stand apart.
            where += " and ( actorId eq @user or targetUserId eq @user )"
            parameters["user"] = user_id.lower()
        if action is not None:
            known = [str(a) for a in Action]
            if action not in known:
                field_name = "action"
                raise ValidationError(field_name, f"must be one of {', '.join(known)}")
            where += " and action eq @action"
            parameters["action"] = action
        rows, next_token = self._tables.page(AUDIT, where, parameters, size=size, token=token)
        return [_entry(row) for row in rows], next_token


def _id_text(value: str | None) -> str | None:
    """Keep a target as given only when it has the shape of an id; else :data:`NOT_AN_ID`.

    Targets come from request paths, so a refused call may name anything, such as an address
    typed where a user's object id belongs; the log must not keep that text.
    """
    if value is None or _ID_SHAPE.fullmatch(value):
        return value
    return NOT_AN_ID


def _entry(row: Mapping[str, Any]) -> AuditEntry:
    try:
        counts = json.loads(str(row.get("counts") or "{}"))
    except json.JSONDecodeError:
        counts = {}
    return AuditEntry(
        entry_id=str(row["RowKey"]),
        at=str(row.get("at", "")),
        actor_id=str(row.get("actorId", "")),
        action=str(row.get("action", "")),
        outcome=str(row.get("outcome", "")),
        target_user_id=row.get("targetUserId"),
        target_id=row.get("targetId"),
        reason=row.get("reason"),
        counts=counts if isinstance(counts, dict) else {},
    )
