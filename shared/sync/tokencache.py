"""A connection's MSAL token cache: kept sealed in its row, and a rotated one never lost.

The cache is sealed with AES-GCM under a key from Key Vault and bound to the row's keys. A
refresh that rotates the refresh token is written back at once, conditionally on the ETag read,
so a rotated token is never lost: a write of the row's other fields meanwhile only makes it try
again on the new ETag; when two workers refresh at the same moment the loser keeps its token for
this run, and the winner's newer cache (whose refresh token is equally valid) stays stored; a
revoke or a new consent meanwhile is never overwritten. A new consent seals a fresh cache
(:meth:`shared.sync.connectionstore.ConnectionStore.save_grant`).

A cache that will never open again (its key version purged or disabled in Key Vault, or the
ciphertext not authentic) asks the user to consent again (``token_cache_unreadable``), the only
way to a new grant; a Key Vault that is unreachable or lacks the key still fails the job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.consent.crypto import Sealed
from shared.errors import ConflictError, ReauthRequiredError, SealedValueUnreadableError
from shared.sync.connections import ROW_WRITE_ATTEMPTS, TABLE

if TYPE_CHECKING:
    from shared.adapters.tables import TableEntityStore
    from shared.adapters.tokens import MsalTokenClient
    from shared.consent.crypto import TokenCipher
    from shared.sync.connections import Connection

logger = logging.getLogger(__name__)


class ConnectionTokens:
    """Gets Graph tokens from a connection's sealed cache; a part of the connection store."""

    _tables: TableEntityStore
    _cipher: TokenCipher
    _msal: MsalTokenClient

    def access_token(self, connection: Connection, *, force_refresh: bool = False) -> str:
        """Return a Graph access token for the connection, persisting a rotated cache.

        Raises:
            ReauthRequiredError: when there is no usable grant (none stored, or a sealed cache
                that will never open) and the user must consent again.
        """
        row = self._tables.get(
            TABLE, table_key(connection.tenant_id), table_key(connection.user_id, connection.kind)
        )
        if row is None or not row.get("tokenCache"):
            msg = "no_token"
            raise ReauthRequiredError(msg, "the connection holds no token")
        sealed = Sealed(str(row["tokenCache"]), str(row["tokenKeyVersion"]))
        try:
            cache_json = self._cipher.open(sealed, connection.key)
        except SealedValueUnreadableError as error:
            logger.warning(
                "token cache will never open; the user must consent again",
                extra={"connection": connection.key, "key_version": sealed.key_version},
            )
            msg = "token_cache_unreadable"
            raise ReauthRequiredError(msg, "the sealed token cache does not open") from error
        result = self._msal.access_token(
            cache_json, connection.home_account_id, connection.scopes, force_refresh=force_refresh
        )
        if result.changed_cache_json is not None:
            self._store_cache(row, connection.key, result.changed_cache_json)
        return result.token

    def _store_cache(self, row: dict[str, Any], key: str, cache_json: str) -> None:
        """Write a rotated cache unless another writer replaced or destroyed the one it came from.

        A conflict caused by a write of other fields (chosen folders, a round record) must not
        cost the rotated refresh token (BR-07): the row is read again and, while its cache is
        still the one this refresh started from, the write is tried again on the new ETag.
        """
        sealed = self._cipher.seal(cache_json, key)
        for _ in range(ROW_WRITE_ATTEMPTS):
            updated = {
                **row,
                "tokenCache": sealed.ciphertext,
                "tokenKeyVersion": sealed.key_version,
            }
            try:
                self._tables.update(TABLE, updated, etag=row.get("_etag"))
            except ConflictError:
                current = self._tables.get(TABLE, str(row["PartitionKey"]), str(row["RowKey"]))
                if current is None or current.get("tokenCache") != row.get("tokenCache"):
                    # A rotation by another worker (equally valid), a new consent or a revoke.
                    logger.info("token cache replaced by another writer", extra={"connection": key})
                    return
                row = current
            else:
                return
        logger.warning("token cache not written: its row kept changing", extra={"connection": key})
