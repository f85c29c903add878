"""Slot claims: which sync slot a connection last had a job enqueued for, so it gets one job.

A claim is a row of the ``connections`` table in a ``~slot|<shard>`` partition, one per
connection, keyed by the connection's id (:func:`shared.sync.connections.connection_key`: its
tenant's key, ``|``, its row key), so the claims of a page of connections, which the fan-out reads
in key order across tenants, are one key range in every shard. The fan-out claims a slot by
rewriting this row conditionally on its ETag (in all-or-nothing transactions per shard, one by
one when one fails), so two fan-outs for one slot enqueue one job (BR-15). The claim is kept
apart from the connection row so it never races the conditional write of a rotated token cache.
The claims spread over :data:`SLOT_SHARDS` partitions (by a hash of the connection's id): a
fan-out writes one claim per connection within seconds, and Table Storage serves about 2,000
entities per second per partition, which one partition for a 100,000-connection fleet would
exceed.

Known limitations: claims written in earlier layouts (in ``~slots|<tenant key>`` or
``~slots|<tenant key>|<shard>``) are not read, so each connection may get one extra job in the
first slot after an upgrade (the mailbox gate makes it wait or end as a no-op); the old rows stay
unused. A claim read is only a hint for the conditional writes: where one tenant's key is a
prefix of another's, a claim may sort outside the page's range and is then found by the failed
write instead, at the cost of one-by-one claims for its transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import key_order
from shared.errors import ConflictError, InvalidJobError, TransientError
from shared.sync.connections import TABLE, now_iso
from shared.sync.schedule import parse_slot, slot_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from shared.adapters.tables import TableEntityStore
    from shared.sync.connections import Connection

# NOTE: table_key() escapes "~" as "~7E" and hashes as "~h…", so these never meet a tenant's key.
SLOT_PREFIX = "~slot|"
CLAIM_ATTEMPTS = 3
CLAIM_WORKERS = 8
"""Concurrent claim writes: below the 10 connections azure-core pools per client."""
CLAIM_BATCH = 100
"""Claims written per transaction: Table Storage's limit for one batch."""
SLOT_SHARDS = 16
"""Partitions the slot claims spread over: 16 x 2,000 entities/s of headroom."""
_NEVER = datetime.min.replace(tzinfo=UTC)
MAX_SLOT_AHEAD = timedelta(minutes=10)
"""How far ahead of a worker's clock a slot may be: one period of the timer."""


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


class SlotClaims:
    """Claims sync slots for connections and gives them back; a part of the connection store."""

    _tables: TableEntityStore

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


def _claim_row(connection: Connection, text: str, claim_id: str) -> dict[str, Any]:
    keys = {"PartitionKey": slot_partition(connection), "RowKey": connection.key}
    return {**keys, "slot": text, "claimId": claim_id, "claimedAt": now_iso()}


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
