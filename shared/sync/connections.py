"""Connections: one per user and kind (mail, calendar), with state, chosen folders and tokens.

A connection is a row of the ``connections`` table in its tenant's partition, ``<tenant key>``,
keyed by the user and the kind. This module says what a connection is (:class:`Connection`, its
kinds and states) and how its row reads back; :class:`shared.sync.connectionstore.ConnectionStore`
reads and writes connections, with its parts in :mod:`shared.sync.tokencache` (the sealed MSAL
token cache), :mod:`shared.sync.slotclaims` (the fan-out's claims on sync slots) and
:mod:`shared.sync.fleet` (the tenant index, pages of due connections and the records of fan-out
pages passed on). Those parts keep rows of their own in this table, in partitions no tenant's key
can take: :func:`shared.adapters.tablelimits.table_key` escapes ``~`` as ``~7E`` and starts a
hashed key with ``~h``, so it never starts a key with ``~p``, ``~s`` or ``~t``.

Known limitations: a tenant's connection rows share one partition, ``<tenant key>``: each sync
job reads its row two or three times and writes it once (the round record, a rotated token
cache), so a 100,000-connection tenant puts about 400,000 operations per 10-minute slot there,
roughly 700 per second on average, below the partition target only while the jobs spread over
the slot; the fan-out's page reads (1,000 rows per query) come on top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key

if TYPE_CHECKING:
    from collections.abc import Mapping

TABLE = "connections"
MAIL = "mail"
CALENDAR = "calendar"
KINDS = (MAIL, CALENDAR)
"""Every kind of connection; each has its own consent, job queue and cursors."""
ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
REVOKED = "revoked"
ERROR = "error"
DUE_STATES = frozenset({ACTIVE, ERROR})
"""States the fan-out enqueues jobs for: an ``error`` connection is retried every slot."""
JOB_POISONED = "job_poisoned"
ROW_WRITE_ATTEMPTS = 3
"""Tries of a conditional write of a connection row (a rotated token cache, a move to
reauth_required) while other fields of the row change meanwhile."""


@dataclass(frozen=True, slots=True)
class Folder:
    """A mail folder chosen for sync."""

    folder_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Connection:
    """A user's connection of one kind, as stored."""

    tenant_id: str
    user_id: str
    kind: str
    state: str
    upn: str
    folders: tuple[Folder, ...]
    home_account_id: str
    scopes: tuple[str, ...]
    last_sync_at: str | None = None
    last_round: Mapping[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: str | None = None
    purged_before: str | None = None
    last_slot: str | None = None
    """The fan-out slot of the last round completed; a second job for it is skipped."""
    """When the user last purged what was synced from this connection: nothing older syncs."""

    @property
    def key(self) -> str:
        """The connection's stable id within the product, safe as a table key."""
        return connection_key(self.tenant_id, self.user_id, self.kind)

    @property
    def row_key(self) -> str:
        """The connection's RowKey within its tenant's partition."""
        return table_key(self.user_id, self.kind)


def connection_key(tenant_id: str, user_id: str, kind: str) -> str:
    """Return the id of a connection, used as a key by cursors and mailbox items."""
    return table_key(tenant_id, user_id, kind)


def connection_from_row(row: Mapping[str, Any]) -> Connection:
    """Return the connection a row of the ``connections`` table stores."""
    folders = tuple(
        Folder(str(item[0]), str(item[1])) for item in json.loads(row.get("folders") or "[]")
    )
    return Connection(
        tenant_id=str(row["tenantId"]),
        user_id=str(row["userId"]),
        kind=str(row["kind"]),
        state=str(row.get("state", ERROR)),
        upn=str(row.get("upn", "")),
        folders=folders,
        home_account_id=str(row.get("homeAccountId", "")),
        scopes=tuple(json.loads(row.get("scopes") or "[]")),
        last_sync_at=row.get("lastSyncAt"),
        last_round=json.loads(row.get("lastRound") or "{}"),
        last_error=row.get("lastError") or None,
        last_error_at=row.get("lastErrorAt") or None,
        purged_before=row.get("purgedBefore") or None,
        last_slot=row.get("lastSlot") or None,
    )


def now_iso() -> str:
    """Return the current UTC time to the second, as connection rows record times."""
    return datetime.now(UTC).isoformat(timespec="seconds")
