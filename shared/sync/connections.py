"""Connections: one per user and kind (mail now), with state, chosen folders and tokens.

The MSAL token cache of a connection is kept in its row, sealed with AES-GCM under a key from
Key Vault and bound to the row's keys. A refresh that rotates the refresh token is written back
at once, conditionally on the ETag read, so a rotated token is never lost; when two workers
refresh at the same moment the loser keeps its token for this run, and the winner's newer cache
(whose refresh token is equally valid) stays stored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.consent.crypto import Sealed, TokenCipher
from shared.errors import ConflictError, ReauthRequiredError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from shared.adapters.tables import TableEntityStore
    from shared.adapters.tokens import Grant, MsalTokenClient

logger = logging.getLogger(__name__)

TABLE = "connections"
MAIL = "mail"
ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
REVOKED = "revoked"
ERROR = "error"


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

    @property
    def key(self) -> str:
        """The connection's stable id within the product, safe as a table key."""
        return connection_key(self.tenant_id, self.user_id, self.kind)


def connection_key(tenant_id: str, user_id: str, kind: str) -> str:
    """Return the id of a connection, used as a key by cursors and mailbox items."""
    return table_key(tenant_id, user_id, kind)


class ConnectionStore:
    """Reads and writes connections, their token caches included."""

    def __init__(self, tables: TableEntityStore, cipher: TokenCipher, msal: MsalTokenClient):
        self._tables = tables
        self._cipher = cipher
        self._msal = msal

    @property
    def cipher(self) -> TokenCipher:
        """The cipher that seals token caches; consent flows use it too."""
        return self._cipher

    def get(self, tenant_id: str, user_id: str, kind: str = MAIL) -> Connection | None:
        """Return a connection, or ``None`` when the user never connected."""
        row = self._tables.get(TABLE, table_key(tenant_id), table_key(user_id, kind))
        return _connection(row) if row else None

    def list_for_user(self, tenant_id: str, user_id: str) -> list[Connection]:
        """Return every connection of one user."""
        rows = self._tables.query(
            TABLE,
            "PartitionKey eq @pk and userId eq @user",
            {"pk": table_key(tenant_id), "user": user_id},
        )
        return [_connection(row) for row in rows]

    def list_for_tenant(self, tenant_id: str) -> list[Connection]:
        """Return every connection of one tenant."""
        return [
            _connection(row) for row in self._tables.list_partition(TABLE, table_key(tenant_id))
        ]

    def list_active(self) -> Iterator[Connection]:
        """Yield every active connection of every tenant."""
        for row in self._tables.query(TABLE, "state eq @state", {"state": ACTIVE}):
            yield _connection(row)

    def save_grant(self, grant: Grant, kind: str, scopes: Sequence[str]) -> Connection:
        """Store a fresh consent: new sealed token cache, state active, folders kept."""
        partition, row = table_key(grant.tenant_id), table_key(grant.user_id, kind)
        sealed = self._cipher.seal(
            grant.cache_json, connection_key(grant.tenant_id, grant.user_id, kind)
        )
        now = _now()
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

    def access_token(self, connection: Connection) -> str:
        """Return a Graph access token for the connection, persisting a rotated cache.

        Raises:
            ReauthRequiredError: when there is no usable grant and the user must consent again.
        """
        row = self._tables.get(
            TABLE, table_key(connection.tenant_id), table_key(connection.user_id, connection.kind)
        )
        if row is None or not row.get("tokenCache"):
            msg = "no_token"
            raise ReauthRequiredError(msg, "the connection holds no token")
        sealed = Sealed(str(row["tokenCache"]), str(row["tokenKeyVersion"]))
        cache_json = self._cipher.open(sealed, connection.key)
        result = self._msal.access_token(cache_json, connection.home_account_id, connection.scopes)
        if result.changed_cache_json is not None:
            self._store_cache(row, connection.key, result.changed_cache_json)
        return result.token

    def _store_cache(self, row: dict[str, Any], key: str, cache_json: str) -> None:
        sealed = self._cipher.seal(cache_json, key)
        updated = {**row, "tokenCache": sealed.ciphertext, "tokenKeyVersion": sealed.key_version}
        try:
            self._tables.update(TABLE, updated, etag=row.get("_etag"))
        except ConflictError:
            logger.info("token cache written by another worker first", extra={"connection": key})

    def set_folders(self, connection: Connection, folders: Sequence[Folder]) -> Connection:
        """Replace the folders chosen for sync."""
        self._merge(connection, {"folders": json.dumps([[f.folder_id, f.name] for f in folders])})
        return _replace(connection, folders=tuple(folders))

    def record_round(self, connection: Connection, stats: Mapping[str, Any]) -> None:
        """Record a finished sync round: when, and what it kept and dropped."""
        self._merge(
            connection, {"lastSyncAt": _now(), "lastRound": json.dumps(stats), "lastError": ""}
        )

    def record_error(self, connection: Connection, code: str, *, state: str | None = None) -> None:
        """Record a failure code, optionally moving the connection to another state."""
        changes: dict[str, Any] = {"lastError": code, "lastErrorAt": _now()}
        if state is not None:
            changes["state"] = state
        self._merge(connection, changes)

    def _merge(self, connection: Connection, changes: Mapping[str, Any]) -> None:
        keys = {
            "PartitionKey": table_key(connection.tenant_id),
            "RowKey": table_key(connection.user_id, connection.kind),
        }
        self._tables.upsert(TABLE, {**keys, **changes})


def _connection(row: Mapping[str, Any]) -> Connection:
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
    )


def _replace(connection: Connection, **changes: Any) -> Connection:
    values = {name: getattr(connection, name) for name in connection.__dataclass_fields__}
    return Connection(**{**values, **changes})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
