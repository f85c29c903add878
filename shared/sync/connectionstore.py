"""The connection store: reads connections and moves them from one state to another.

A consent makes a connection ``active`` (:meth:`ConnectionStore.save_grant`). A poisoned job
moves it to ``error``, which the fan-out still retries and the next finished round makes
``active`` again. A grant Microsoft refuses moves it to ``reauth_required`` once, with one notice
to its user (BR-08). A revocation destroys its token and makes it ``revoked``, and no job still
in flight moves it out of that state; only a new consent does.

:class:`ConnectionStore` is one class built from parts that live in their own modules:
:class:`shared.sync.tokencache.ConnectionTokens` (Graph tokens from the sealed cache),
:class:`shared.sync.slotclaims.SlotClaims` (claims on sync slots) and
:class:`shared.sync.fleet.FleetIndex` (reads across tenants, the fan-out's records).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.errors import ConflictError
from shared.sync.connections import (
    ACTIVE,
    DUE_STATES,
    ERROR,
    JOB_POISONED,
    MAIL,
    REAUTH_REQUIRED,
    REVOKED,
    ROW_WRITE_ATTEMPTS,
    TABLE,
    Connection,
    connection_from_row,
    connection_key,
    now_iso,
)
from shared.sync.fleet import FleetIndex
from shared.sync.schedule import slot_text
from shared.sync.slotclaims import SlotClaims
from shared.sync.tokencache import ConnectionTokens

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from shared.adapters.tables import TableEntityStore
    from shared.adapters.tokens import Grant, MsalTokenClient
    from shared.consent.crypto import TokenCipher
    from shared.sync.connections import Folder

logger = logging.getLogger(__name__)

CURSORS = "cursors"
PENDING_REMOVALS = "pendingremovals"


class ConnectionStore(FleetIndex, SlotClaims, ConnectionTokens):
    """Reads and writes connections, their token caches included."""

    def __init__(
        self,
        tables: TableEntityStore,
        cipher: TokenCipher,
        msal: MsalTokenClient,
        *,
        notify: Callable[[Connection, str], None] | None = None,
    ):
        self._tables = tables
        self._cipher = cipher
        self._msal = msal
        self._notify = notify

    @property
    def cipher(self) -> TokenCipher:
        """The cipher that seals token caches; consent flows use it too."""
        return self._cipher

    def get(self, tenant_id: str, user_id: str, kind: str = MAIL) -> Connection | None:
        """Return a connection, or ``None`` when the user never connected."""
        row = self._tables.get(TABLE, table_key(tenant_id), table_key(user_id, kind))
        return connection_from_row(row) if row else None

    def list_for_user(self, tenant_id: str, user_id: str) -> list[Connection]:
        """Return every connection of one user."""
        rows = self._tables.query(
            TABLE,
            "PartitionKey eq @pk and userId eq @user",
            {"pk": table_key(tenant_id), "user": user_id},
        )
        return [connection_from_row(row) for row in rows]

    def list_for_tenant(self, tenant_id: str) -> list[Connection]:
        """Return every connection of one tenant."""
        return [
            connection_from_row(row)
            for row in self._tables.list_partition(TABLE, table_key(tenant_id))
        ]

    def page_for_tenant(
        self, tenant_id: str, *, size: int, token: str | None
    ) -> tuple[list[Connection], str | None]:
        """Return one page of a tenant's connections in row key order, and the next page's token.

        Raises:
            ValidationError: when the token is not one this store issued.
        """
        where, parameters = "PartitionKey eq @pk", {"pk": table_key(tenant_id)}
        rows, following = self._tables.page(TABLE, where, parameters, size=size, token=token)
        return [connection_from_row(row) for row in rows], following

    def record_poisoned(self, tenant_id: str, user_id: str, kind: str = MAIL) -> bool:
        """Move a connection whose job was poisoned to ``error``; False when nothing changed.

        Nothing changes when the connection does not exist, or when it waits for consent or is
        revoked: that state and its error code tell the user more.
        """
        if not tenant_id or not user_id:
            return False
        connection = self.get(tenant_id, user_id, kind)
        if connection is None or connection.state not in DUE_STATES:
            return False
        self.record_error(connection, JOB_POISONED, state=ERROR)
        return True

    def revoke(self, tenant_id: str, user_id: str, kind: str) -> Connection | None:
        """Destroy a connection's token and mark it ``revoked``; ``None`` when there is none.

        The sealed token cache is overwritten first, so no job can get a Graph token for the
        connection from then on; the cursors and noted removals go too, so a later consent
        starts from scratch. Stored mail stays (removing it is the purge's job).
        """
        current = self.get(tenant_id, user_id, kind)
        if current is None:
            return None
        keys = {"PartitionKey": table_key(tenant_id), "RowKey": table_key(user_id, kind)}
        changes = {"state": REVOKED, "tokenCache": "", "revokedAt": now_iso(), "lastError": ""}
        self._tables.upsert(TABLE, {**keys, **changes})
        self.forget_progress(current)
        return _replace(current, state=REVOKED)

    def mark_purged(self, connection: Connection, when: datetime) -> None:
        """Record that the user purged this connection's data: nothing received before syncs."""
        self._merge(connection, {"purgedBefore": when.isoformat(timespec="seconds")})

    def forget_progress(self, connection: Connection) -> int:
        """Delete a connection's delta cursors and noted removals; return how many went."""
        gone = 0
        for table in (CURSORS, PENDING_REMOVALS):
            rows = [str(r["RowKey"]) for r in self._tables.list_partition(table, connection.key)]
            for row_key in rows:
                self._tables.delete(table, connection.key, row_key)
            gone += len(rows)
        return gone

    def save_grant(self, grant: Grant, kind: str, scopes: Sequence[str]) -> Connection:
        """Store a fresh consent: new sealed token cache, state active, folders kept.

        A connection that was revoked starts from scratch: whatever a job still in flight at
        the revocation wrote of its cursors is dropped before the new grant is stored.
        """
        previous = self.get(grant.tenant_id, grant.user_id, kind)
        if previous is not None and previous.state == REVOKED:
            self.forget_progress(previous)
        partition, row = table_key(grant.tenant_id), table_key(grant.user_id, kind)
        sealed = self._cipher.seal(
            grant.cache_json, connection_key(grant.tenant_id, grant.user_id, kind)
        )
        now = now_iso()
        self.index_tenant(grant.tenant_id)
        self._tables.upsert(
            TABLE,
            {
                "PartitionKey": partition,
                "RowKey": row,
                "tenantId": grant.tenant_id,
                "userId": grant.user_id,
                "kind": kind,
                "state": ACTIVE,
                "upn": grant.username,
                "homeAccountId": grant.home_account_id,
                "scopes": json.dumps(list(scopes)),
                "tokenCache": sealed.ciphertext,
                "tokenKeyVersion": sealed.key_version,
                "consentedAt": now,
                "lastError": "",
            },
        )
        saved = self.get(grant.tenant_id, grant.user_id, kind)
        if saved is None:
            message = "connection vanished right after it was written"
            raise ConflictError(message)
        return saved

    def set_folders(self, connection: Connection, folders: Sequence[Folder]) -> Connection:
        """Replace the folders chosen for sync."""
        self._merge(connection, {"folders": json.dumps([[f.folder_id, f.name] for f in folders])})
        return _replace(connection, folders=tuple(folders))

    def record_round(
        self, connection: Connection, stats: Mapping[str, Any], *, slot: datetime | None = None
    ) -> None:
        """Record a finished sync round: when, what it kept and dropped, and the job's slot.

        A connection in ``error`` (its last job was poisoned) is ``active`` again.
        """
        changes = {"lastSyncAt": now_iso(), "lastRound": json.dumps(stats), "lastError": ""}
        if slot is not None:
            changes["lastSlot"] = slot_text(slot)
        if connection.state == ERROR and not self._revoked(connection):
            changes["state"] = ACTIVE
        self._merge(connection, changes)

    def record_error(self, connection: Connection, code: str, *, state: str | None = None) -> None:
        """Record a failure code, optionally moving the connection to another state.

        A move to ``reauth_required`` is made once: see :meth:`require_consent`.
        """
        if state == REAUTH_REQUIRED:
            self.require_consent(connection, code)
            return
        changes: dict[str, Any] = {"lastError": code, "lastErrorAt": now_iso()}
        if self._revoked(connection):
            return
        if state is not None:
            changes["state"] = state
        self._merge(connection, changes)

    def require_consent(self, connection: Connection, code: str) -> bool:
        """Move a connection to ``reauth_required`` and notify its user; True when this call did.

        The move is conditional on the row's ETag, so of several jobs that find the refresh token
        refused at once (BR-08) exactly one makes it and sends the one notice; a connection
        already waiting for consent, revoked or gone is left as it is.
        """
        keys = (table_key(connection.tenant_id), table_key(connection.user_id, connection.kind))
        for _ in range(ROW_WRITE_ATTEMPTS):
            row = self._tables.get(TABLE, *keys)
            if row is None or row.get("state") in (REAUTH_REQUIRED, REVOKED):
                return False
            changes = {"state": REAUTH_REQUIRED, "lastError": code, "lastErrorAt": now_iso()}
            try:
                self._tables.update(TABLE, {**row, **changes}, etag=row.get("_etag"))
            except ConflictError:
                continue
            if self._notify is not None:
                self._notify(connection, code)
            return True
        logger.warning("reauth state not written: its row kept changing", extra={"code": code})
        return False

    def _revoked(self, connection: Connection) -> bool:
        """Tell whether the user revoked the connection since a job read it: it stays so."""
        current = self.get(connection.tenant_id, connection.user_id, connection.kind)
        return current is None or current.state == REVOKED

    def _merge(self, connection: Connection, changes: Mapping[str, Any]) -> None:
        keys = {
            "PartitionKey": table_key(connection.tenant_id),
            "RowKey": table_key(connection.user_id, connection.kind),
        }
        self._tables.upsert(TABLE, {**keys, **changes})


def _replace(connection: Connection, **changes: Any) -> Connection:
    values = {name: getattr(connection, name) for name in connection.__dataclass_fields__}
    return Connection(**{**values, **changes})
