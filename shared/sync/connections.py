"""Connections: one per user and kind (mail, calendar), with state, chosen folders and tokens.

The MSAL token cache of a connection is kept in its row, sealed with AES-GCM under a key from
Key Vault and bound to the row's keys. A refresh that rotates the refresh token is written back
at once, conditionally on the ETag read, so a rotated token is never lost: a write of the row's
other fields meanwhile only makes it try again on the new ETag; when two workers refresh at the
same moment the loser keeps its token for this run, and the winner's newer cache (whose refresh
token is equally valid) stays stored; a revoke or a new consent meanwhile is never overwritten.

Two more kinds of row live in the ``connections`` table, in partitions that no tenant's key can
take (:func:`shared.adapters.tablelimits.table_key` never starts a key with ``~s`` or ``~t``):

- ``~tenants``: one row per tenant that ever had a connection, written with each consent; the
  fan-out timer lists this small partition instead of scanning every connection.
- ``~passed|<slot>``: one row per fan-out page that passed its next page on in that slot,
  keyed by the page and the page it passed on (:meth:`ConnectionStore.pass_on_once`), so a
  retried or duplicated page passes it on once; the timer sweeps the rows of slots more than
  an hour old.
- ``~slot|<shard>``: one row per connection holding the last sync slot a job was enqueued for,
  keyed by the connection's id (:func:`connection_key`: its tenant's key, ``|``, its row key),
  so the claims of a page of connections, which the fan-out reads in key order across tenants,
  are one key range in every shard. The fan-out claims a slot by rewriting this row
  conditionally on its ETag (in all-or-nothing transactions per shard, one by one when one
  fails), so two fan-outs for one slot enqueue one job (BR-15). The claim is kept apart from the
  connection row so it never races the conditional write of a rotated token cache. The claims
  spread over :data:`SLOT_SHARDS` partitions (by a hash of the connection's id): a fan-out
  writes one claim per connection within seconds, and Table Storage serves about 2,000 entities
  per second per partition, which one partition for a 100,000-connection fleet would exceed.

Known limitations: a tenant stays in ``~tenants`` after its last connection is gone (its fan-out
finds nothing); connections written before the index existed need one
:meth:`ConnectionStore.rebuild_tenant_index` (``python -m shared.maintenance
rebuild-tenant-index``). Claims written in earlier layouts (in
``~slots|<tenant key>`` or ``~slots|<tenant key>|<shard>``) are not read, so each connection may
get one extra job in the first slot after an upgrade (the mailbox gate makes it wait or end as a
no-op); the old rows stay unused. A claim read is only a hint for the conditional writes: where
one tenant's key is a prefix of another's, a claim may sort outside the page's range and is then
found by the failed write instead, at the cost of one-by-one claims for its transaction. A
tenant's connection rows themselves share one partition, ``<tenant key>``: each sync job reads
its row two or three times and writes it once (the round record, a rotated token cache), so a
100,000-connection tenant puts about 400,000 operations per 10-minute slot there, roughly 700 per
second on average, below the partition target only while the jobs spread over the slot; the
fan-out's page reads (1,000 rows per query) come on top.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import key_order, table_key
from shared.consent.crypto import Sealed, TokenCipher
from shared.errors import ConflictError, InvalidJobError, ReauthRequiredError, TransientError
from shared.sync.schedule import parse_slot, slot_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from shared.adapters.tables import TableEntityStore
    from shared.adapters.tokens import Grant, MsalTokenClient

logger = logging.getLogger(__name__)

TABLE = "connections"
MAIL = "mail"
CALENDAR = "calendar"
KINDS = (MAIL, CALENDAR)
"""Every kind of connection; each has its own consent, job queue and cursors."""
ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
REVOKED = "revoked"
CURSORS = "cursors"
PENDING_REMOVALS = "pendingremovals"
ERROR = "error"
DUE_STATES = frozenset({ACTIVE, ERROR})
"""States the fan-out enqueues jobs for: an ``error`` connection is retried every slot."""
JOB_POISONED = "job_poisoned"

# NOTE: table_key() escapes "~" as "~7E" and hashes as "~h…", so these never meet a tenant's key.
TENANT_INDEX = "~tenants"
SLOT_PREFIX = "~slot|"
PASSED_PREFIX = "~passed|"
"""Partitions, one per slot, of the fan-out pages that passed their successor on."""
CLAIM_ATTEMPTS = 3
ROW_WRITE_ATTEMPTS = 3
"""Tries of a conditional write of a connection row (a rotated token cache, a move to
reauth_required) while other fields of the row change meanwhile."""
CLAIM_WORKERS = 8
"""Concurrent claim writes: below the 10 connections azure-core pools per client."""
CLAIM_BATCH = 100
"""Claims written per transaction: Table Storage's limit for one batch."""
SLOT_SHARDS = 16
"""Partitions the slot claims spread over: 16 x 2,000 entities/s of headroom."""
FANOUT_FIELDS = ("PartitionKey", "RowKey", "tenantId", "userId", "kind", "state")
"""What the fan-out reads of a connection row: enough for its claim and its job, no token."""
_NEVER = datetime.min.replace(tzinfo=UTC)
MAX_SLOT_AHEAD = timedelta(minutes=10)
"""How far ahead of a worker's clock a slot may be: one period of the timer."""


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
    """When the user last purged what was synced from this connection: nothing older syncs."""

    @property
    def key(self) -> str:
        """The connection's stable id within the product, safe as a table key."""
        return connection_key(self.tenant_id, self.user_id, self.kind)

    @property
    def row_key(self) -> str:
        """The connection's RowKey within its tenant's partition."""
        return table_key(self.user_id, self.kind)


class PartialClaimError(TransientError):
    """Raised when storage failed part-way through claiming; carries the claims already won."""

    def __init__(self, message: str, claims: Sequence[SlotClaim]) -> None:
        super().__init__(message)
        self.claims = list(claims)


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """A connection's claim on a sync slot, with what to restore if its job is not sent."""

    connection: Connection
    slot: str
    etag: str
    previous: Mapping[str, Any] | None


def connection_key(tenant_id: str, user_id: str, kind: str) -> str:
    """Return the id of a connection, used as a key by cursors and mailbox items."""
    return table_key(tenant_id, user_id, kind)


class ConnectionStore:
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

    def page_for_tenant(
        self, tenant_id: str, *, size: int, token: str | None
    ) -> tuple[list[Connection], str | None]:
        """Return one page of a tenant's connections in row key order, and the next page's token.

        Raises:
            ValidationError: when the token is not one this store issued.
        """
        where, parameters = "PartitionKey eq @pk", {"pk": table_key(tenant_id)}
        rows, following = self._tables.page(TABLE, where, parameters, size=size, token=token)
        return [_connection(row) for row in rows], following

    def due_page(
        self, first_tenant: str, last_tenant: str, *, size: int, token: str | None
    ) -> tuple[list[Connection], str | None]:
        """Return one page of the due connections of a span of tenants, and the next page's token.

        The span is every tenant whose key lies from ``first_tenant``'s to ``last_tenant``'s, read
        in key order, so one query covers many small tenants. Only the fields the fan-out needs
        are read (:data:`FANOUT_FIELDS`): the connections carry no folders, scopes or token. A
        page may hold fewer than ``size``, or none, and still have a next page.

        Raises:
            ValidationError: when the token is not one this store issued.
        """
        # NOTE: the SDK finds parameters between spaces, so the parentheses stand apart.
        where = (
            "PartitionKey ge @first and PartitionKey le @last "
            "and ( state eq @active or state eq @error )"
        )
        parameters = {
            "first": table_key(first_tenant),
            "last": table_key(last_tenant),
            "active": ACTIVE,
            "error": ERROR,
        }
        rows, following = self._tables.page(
            TABLE, where, parameters, size=size, token=token, select=FANOUT_FIELDS
        )
        # NOTE: the key range may reach a partition of this table that is not a tenant's.
        found = [_connection(row) for row in rows if _is_connection_row(row)]
        return found, following

    def list_indexed_tenants(
        self, first: str | None = None, last: str | None = None
    ) -> Iterator[str]:
        """Yield the id of every tenant that has (or had) a connection, in key order.

        With ``first`` and ``last``, only the tenants whose keys lie between theirs are yielded.
        """
        if first is None or last is None:
            rows = self._tables.list_partition(TABLE, TENANT_INDEX)
        else:
            where = "PartitionKey eq @pk and RowKey ge @first and RowKey le @last"
            bounds = {"pk": TENANT_INDEX, "first": table_key(first), "last": table_key(last)}
            rows = self._tables.query(TABLE, where, bounds)
        for row in rows:
            yield str(row["tenantId"])

    def index_tenant(self, tenant_id: str) -> None:
        """Record that a tenant has connections, so the fan-out visits it."""
        entity = {"PartitionKey": TENANT_INDEX, "RowKey": table_key(tenant_id)}
        self._tables.upsert(TABLE, {**entity, "tenantId": tenant_id})

    def rebuild_tenant_index(self) -> int:
        """Index the tenant of every stored connection, scanning the table; return the count."""
        tenants = {
            str(row["tenantId"])
            for row in self._tables.query(
                TABLE, "kind eq @mail or kind eq @calendar", {"mail": MAIL, "calendar": CALENDAR}
            )
        }
        for tenant_id in tenants:
            self.index_tenant(tenant_id)
        return len(tenants)

    def pass_on_once(self, slot: datetime, page_id: str) -> bool:
        """Record that a fan-out page passes its next page on; False when a copy already did.

        Raises:
            TransientError: when the record cannot be written; nothing was recorded.
        """
        row = {"PartitionKey": _passed_partition(slot), "RowKey": page_id, "passedAt": _now()}
        try:
            self._tables.create(TABLE, row)
        except ConflictError:
            return False
        return True

    def forget_passed(self, slot: datetime, page_id: str) -> None:
        """Take back a page's record when its next page could not be sent after all."""
        self._tables.delete(TABLE, _passed_partition(slot), page_id)

    def sweep_passed(self, before: datetime) -> int:
        """Delete the records of pages of slots before ``before``; return how many went."""
        where = "PartitionKey ge @low and PartitionKey lt @high"
        bounds = {"low": PASSED_PREFIX, "high": _passed_partition(before)}
        keys = [
            (str(row["PartitionKey"]), str(row["RowKey"]))
            for row in self._tables.query(TABLE, where, bounds)
        ]
        self._tables.delete_batch(TABLE, keys)
        return len(keys)

    def claim_slots(self, connections: Sequence[Connection], slot: datetime) -> list[SlotClaim]:
        """Claim ``slot`` for each connection; return the claims this call won.

        A connection already claimed for this slot or a later one is skipped, so however many
        fan-outs run for a slot, each connection is claimed once. The claims of connections in
        key order (a fan-out page) are read with one query and written conditionally in
        transactions of up to :data:`CLAIM_BATCH` per shard, on up to :data:`CLAIM_WORKERS`
        threads. Each claim carries an id of this call, so a
        write whose answer was lost and that did happen is recognised as this call's own.
        """
        if not connections:
            return []
        known = self._slot_rows(connections)
        due = [c for c in connections if _claimed_slot(known.get(c.key) or {}) < slot]
        chunks, claim_id = _claim_chunks(due), uuid.uuid4().hex
        workers = max(1, min(CLAIM_WORKERS, len(chunks)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="claim") as pool:
            futures = [
                pool.submit(self._claim_chunk, chunk, slot, known, claim_id) for chunk in chunks
            ]
        won: list[SlotClaim] = []
        failure: BaseException | None = None
        for future in futures:
            error = future.exception()
            if error is None:
                won.extend(future.result())
                continue
            failure = failure or error
            if isinstance(error, PartialClaimError):
                won.extend(error.claims)
        if failure is not None:
            # No job will be sent for this call's claims: give them all back, so the retry
            # of the page claims and sends them again.
            self.release_slots(won)
            raise failure
        return won

    def release_slots(self, claims: Iterable[SlotClaim]) -> int:
        """Give back claims whose job was not sent, unless claimed again since; return how many."""
        released = 0
        for claim in claims:
            partition = slot_partition(claim.connection)
            try:
                if claim.previous is None:
                    self._tables.delete(TABLE, partition, claim.connection.key, etag=claim.etag)
                else:
                    self._tables.update(TABLE, claim.previous, etag=claim.etag)
            except ConflictError:
                continue
            released += 1
        return released

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

    def list_active(self) -> Iterator[Connection]:
        """Yield every active connection of every tenant."""
        for row in self._tables.query(TABLE, "state eq @state", {"state": ACTIVE}):
            yield _connection(row)

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
        changes = {"state": REVOKED, "tokenCache": "", "revokedAt": _now(), "lastError": ""}
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
        now = _now()
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

    def access_token(self, connection: Connection, *, force_refresh: bool = False) -> str:
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

    def set_folders(self, connection: Connection, folders: Sequence[Folder]) -> Connection:
        """Replace the folders chosen for sync."""
        self._merge(connection, {"folders": json.dumps([[f.folder_id, f.name] for f in folders])})
        return _replace(connection, folders=tuple(folders))

    def record_round(self, connection: Connection, stats: Mapping[str, Any]) -> None:
        """Record a finished sync round: when, and what it kept and dropped.

        A connection in ``error`` (its last job was poisoned) is ``active`` again.
        """
        changes = {"lastSyncAt": _now(), "lastRound": json.dumps(stats), "lastError": ""}
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
        changes: dict[str, Any] = {"lastError": code, "lastErrorAt": _now()}
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
            changes = {"state": REAUTH_REQUIRED, "lastError": code, "lastErrorAt": _now()}
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

    def _slot_rows(self, connections: Sequence[Connection]) -> dict[str, dict[str, Any]]:
        """Read the current claims of a page's connections with one query over their shards.

        Returns:
            The claim rows by connection id (:attr:`Connection.key`).
        """
        shards = {slot_partition(connection) for connection in connections}
        keys = [connection.key for connection in connections]
        bounds = {
            "low": min(shards),
            "high": max(shards),
            "first": min(keys, key=key_order),
            "last": max(keys, key=key_order),
        }
        rows = self._tables.query(
            TABLE,
            "PartitionKey ge @low and PartitionKey le @high and RowKey ge @first "
            "and RowKey le @last",
            bounds,
        )
        # NOTE: the key ranges may reach other rows; only the page's own claims count.
        wanted = set(keys)
        return {
            str(row["RowKey"]): row
            for row in rows
            if row["PartitionKey"] in shards and row["RowKey"] in wanted
        }

    def _claim_chunk(
        self,
        chunk: Sequence[Connection],
        slot: datetime,
        known: Mapping[str, dict[str, Any]],
        claim_id: str,
    ) -> list[SlotClaim]:
        """Claim up to 100 connections of one shard in one all-or-nothing transaction.

        When another fan-out wrote any of their claims since they were read, the transaction
        writes nothing; when its answer is lost, it may have written all. Either way each
        connection is then claimed on its own, re-reading as needed.
        """
        text = slot_text(slot)
        writes = [(_claim_row(c, text, claim_id), _etag(known.get(c.key))) for c in chunk]
        try:
            etags = self._tables.write_batch(TABLE, writes)
        except (ConflictError, TransientError):
            return self._claim_each(chunk, slot, known, claim_id)
        return [
            SlotClaim(connection, text, etag, known.get(connection.key))
            for connection, etag in zip(chunk, etags, strict=True)
        ]

    def _claim_each(
        self,
        chunk: Sequence[Connection],
        slot: datetime,
        known: Mapping[str, dict[str, Any]],
        claim_id: str,
    ) -> list[SlotClaim]:
        """Claim connections one by one; a failure carries the claims won before it.

        Raises:
            PartialClaimError: when storage failed part-way, with what was claimed until then.
        """
        won: list[SlotClaim] = []
        for connection in chunk:
            try:
                claim = self._claim(connection, slot, known.get(connection.key), claim_id)
            except TransientError as error:
                raise PartialClaimError(str(error), won) from error
            if claim is not None:
                won.append(claim)
        return won

    def _claim(
        self,
        connection: Connection,
        slot: datetime,
        previous: dict[str, Any] | None,
        claim_id: str,
    ) -> SlotClaim | None:
        text, row = slot_text(slot), previous
        for _ in range(CLAIM_ATTEMPTS):
            if row is not None and _claimed_slot(row) >= slot:
                # This call's own claim, written by a transaction whose answer was lost.
                mine = row.get("claimId") == claim_id
                return SlotClaim(connection, text, str(row["_etag"]), previous) if mine else None
            try:
                etag = self._tables.update(
                    TABLE, _claim_row(connection, text, claim_id), etag=_etag(row)
                )
            except (ConflictError, TransientError):
                # Another fan-out wrote first, or the answer was lost: re-read and decide again.
                row = self._tables.get(TABLE, slot_partition(connection), connection.key)
                continue
            return SlotClaim(connection, text, etag, row)
        return None

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
        last_error_at=row.get("lastErrorAt") or None,
        purged_before=row.get("purgedBefore") or None,
    )


def _replace(connection: Connection, **changes: Any) -> Connection:
    values = {name: getattr(connection, name) for name in connection.__dataclass_fields__}
    return Connection(**{**values, **changes})


def _claim_row(connection: Connection, text: str, claim_id: str) -> dict[str, Any]:
    keys = {"PartitionKey": slot_partition(connection), "RowKey": connection.key}
    return {**keys, "slot": text, "claimId": claim_id, "claimedAt": _now()}


def _claim_chunks(connections: Sequence[Connection]) -> list[list[Connection]]:
    """Group connections by their claim's partition, in chunks of one transaction each."""
    shards: dict[str, list[Connection]] = {}
    for connection in connections:
        shards.setdefault(slot_partition(connection), []).append(connection)
    return [
        members[start : start + CLAIM_BATCH]
        for members in shards.values()
        for start in range(0, len(members), CLAIM_BATCH)
    ]


def slot_partition(connection: Connection) -> str:
    """Return the partition of a connection's slot claim: one of the shards, by its id."""
    digest = hashlib.sha256(connection.key.encode("utf-8")).digest()
    shard = int.from_bytes(digest[:4], "big") % SLOT_SHARDS
    return f"{SLOT_PREFIX}{shard:02x}"


def _passed_partition(slot: datetime) -> str:
    # UTC ISO times sort as they follow each other, escaped or not.
    return PASSED_PREFIX + table_key(slot_text(slot))


def _is_connection_row(row: Mapping[str, Any]) -> bool:
    """Tell whether a row is a connection's: its tenant's partition, a kind of connection."""
    tenant = row.get("tenantId")
    return (
        isinstance(tenant, str)
        and row.get("PartitionKey") == table_key(tenant)
        and row.get("kind") in KINDS
        and isinstance(row.get("userId"), str)
    )


def _claimed_slot(row: Mapping[str, Any]) -> datetime:
    """Return the slot a claim row holds; never claimed when unreadable or in the future.

    A claim more than :data:`MAX_SLOT_AHEAD` ahead of this worker's clock was written by a
    fan-out whose clock ran fast; left standing, it would make every correct round skip the
    connection until that time, so it counts as no claim.
    """
    try:
        slot = parse_slot(row.get("slot"))
    except InvalidJobError:
        return _NEVER
    return _NEVER if slot > datetime.now(UTC) + MAX_SLOT_AHEAD else slot


def _etag(row: Mapping[str, Any] | None) -> str | None:
    return None if row is None else str(row["_etag"])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
