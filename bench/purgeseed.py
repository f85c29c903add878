"""Seeding for the purge benchmark: sync's own save, its rows written in batched transactions.

Storing 10,000 emails one request at a time through :meth:`EmailStore.save` takes minutes on
Azurite, and seeding is not what the benchmark times. So :meth:`EmailStore.save` runs unchanged,
called exactly as sync calls it, against :class:`RecordingTables`: an in-memory stand-in for the
table adapter that keeps what the save writes. The recorded entities then go to Azurite in
transactions of up to 100 entities of one partition, on several threads.

The first :data:`CHECKED` emails are saved through the real adapter on Azurite as well, and the
entities recorded for them must equal what Azurite then holds, keys and every property (ETags
and the random generation of an email row aside); otherwise seeding stops. So the batched rows
are the rows the save writes, also after the save path changes.

Known limitations: the stand-in answers the reads of the save (an email row the second holder's
save merges into) from what it recorded; a save that started to query other tables would read
nothing there and the check would fail, which is the intended signal.
"""

from __future__ import annotations

import copy
import itertools
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.tables import ETAG, TableEntityStore
from shared.errors import ConflictError
from shared.matching.addresses import parse_address
from shared.sync.connections import MAIL, connection_key
from shared.sync.store import EmailStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from azure.data.tables import TableServiceClient

    from shared.adapters.blobs import BlobBodyStore

OWNER, OTHER = "ann", "ben"
SHARED_EVERY = 5
COMPANIES = 10
CHECKED = 40
"""Emails saved through the real adapter too, to check the recorded rows against Azurite's."""
WRITE_WORKERS = 8
UNCOMPARED = frozenset({ETAG, "generation"})
"""Properties two saves of the same email make differently: the ETag, and the random id an
email row takes when it is created (its blobs are named by it)."""
BODY = "<p>" + "Quarterly figures attached, see the table below. " * 40 + "</p>"

Key = tuple[str, str, str]
"""Table, PartitionKey, RowKey."""


@dataclass(frozen=True, slots=True)
class Seeded:
    """What seeding wrote: emails, entities and transactions, and emails checked one by one."""

    emails: int
    checked: int
    entities: int
    transactions: int


class RecordingTables(TableEntityStore):
    """Keeps the writes of :meth:`EmailStore.save` in memory, with the adapter's semantics."""

    def __init__(self, service: TableServiceClient) -> None:
        super().__init__(service)
        self.rows: dict[Key, dict[str, Any]] = {}
        self._etags = itertools.count(1)

    def get(self, table: str, partition: str, row: str) -> dict[str, Any] | None:
        """Return a recorded entity with its ETag, or ``None``."""
        found = self.rows.get((table, partition, row))
        return None if found is None else copy.deepcopy(found)

    def upsert(self, table: str, entity: Mapping[str, Any], *, replace: bool = False) -> None:
        """Record an insert, merge or replace."""
        key = _key(table, entity)
        stored = {} if replace else self.rows.get(key, {})
        self._keep(key, {**stored, **_plain(entity)})

    def create(self, table: str, entity: Mapping[str, Any]) -> str:
        """Record an insert; raise ConflictError when one is recorded with the same keys."""
        key = _key(table, entity)
        if key in self.rows:
            msg = f"{table} entity already exists"
            raise ConflictError(msg)
        return self._keep(key, _plain(entity))

    def update(self, table: str, entity: Mapping[str, Any], *, etag: str | None) -> str:
        """Record a replace if the ETag matches (an insert without one)."""
        key = _key(table, entity)
        current = self.rows.get(key)
        if etag is not None and (current is None or current[ETAG] != etag):
            msg = f"{table} entity changed since it was read"
            raise ConflictError(msg)
        if etag is None and current is not None:
            msg = f"{table} entity already exists"
            raise ConflictError(msg)
        return self._keep(key, _plain(entity))

    def delete(self, table: str, partition: str, row: str, *, etag: str | None = None) -> None:
        """Record a delete."""
        self.rows.pop((table, partition, row), None)

    def _keep(self, key: Key, entity: dict[str, Any]) -> str:
        etag = f"recorded-{next(self._etags)}"
        self.rows[key] = {**entity, ETAG: etag}
        return etag


def seed_mailbox(
    service: TableServiceClient, blobs: BlobBodyStore, tenant: str, count: int
) -> Seeded:
    """Store ``count`` emails for OWNER as sync's save does; every fifth also for OTHER.

    Raises:
        RuntimeError: when the recorded rows of the checked emails differ from Azurite's.
    """
    checked = min(CHECKED, count)
    tables = TableEntityStore(service)
    real = EmailStore(tables, blobs)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda number: save_email(real, tenant, number), range(checked)))

    recorder = RecordingTables(service)
    recording = EmailStore(recorder, blobs)
    for number in range(checked):
        save_email(recording, tenant, number)
    _check(tables, recorder.rows)

    recorder.rows.clear()
    for number in range(checked, count):
        save_email(recording, tenant, number)
    transactions = _write(tables, recorder.rows)
    return Seeded(count, checked, len(recorder.rows), transactions)


def save_email(store: EmailStore, tenant: str, number: int) -> None:
    """Save email ``number`` for OWNER, and for OTHER when it is shared, with sync's save."""
    stamp = (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=7 * number)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    message = {
        "id": f"AAMk-{number:07d}",
        "internetMessageId": f"<bench-{number}-{tenant}@customer.example>",
        "conversationId": f"conv-{number // 4}",
        "subject": f"Order {number}",
        "bodyPreview": "Quarterly figures attached",
        "body": {"contentType": "html", "content": BODY},
        "from": {"emailAddress": {"name": "Buyer", "address": "buyer@customer.example"}},
        "toRecipients": [{"emailAddress": {"name": "Ann", "address": "ann@vendor.example"}}],
        "sentDateTime": stamp,
        "receivedDateTime": stamp,
        "parentFolderId": "inbox",
    }
    # One company each, a second one for every fourth email: one or two index rows.
    companies = {f"company-{number % COMPANIES}"}
    if number % 4 == 0:
        companies.add(f"company-{(number + 1) % COMPANIES}")
    holders = (OWNER, OTHER) if number % SHARED_EVERY == 0 else (OWNER,)
    for user in holders:
        store.save(
            tenant_id=tenant,
            user_id=user,
            connection=connection_key(tenant, user, MAIL),
            message={**message, "id": f"{message['id']}-{user}"},
            participants=_PARTICIPANTS,
            company_ids=frozenset(companies),
        )


_PARTICIPANTS = [
    address
    for address in (parse_address("buyer@customer.example"), parse_address("ann@vendor.example"))
    if address is not None
]


def _check(tables: TableEntityStore, recorded: dict[Key, dict[str, Any]]) -> None:
    """Fail unless every recorded entity is stored on Azurite with the same properties."""
    for (table, partition, row), entity in recorded.items():
        stored = tables.get(table, partition, row)
        expected = {name: value for name, value in entity.items() if name not in UNCOMPARED}
        actual = (
            None if stored is None else {n: v for n, v in stored.items() if n not in UNCOMPARED}
        )
        if actual != expected:
            message = (
                f"the batched seeder would write {table} {partition}/{row} unlike the save: "
                f"recorded {sorted(expected)}, stored {sorted(actual or {})}"
            )
            raise RuntimeError(message)


def _write(tables: TableEntityStore, rows: dict[Key, dict[str, Any]]) -> int:
    """Write the recorded entities in transactions of up to 100 per partition; return how many."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (table, partition, _), entity in rows.items():
        groups[table, partition].append(entity)
    chunks = [
        (table, members[start : start + 100])
        for (table, _), members in groups.items()
        for start in range(0, len(members), 100)
    ]
    with ThreadPoolExecutor(max_workers=WRITE_WORKERS) as pool:
        list(pool.map(lambda chunk: tables.upsert_batch(*chunk), chunks))
    return len(chunks)


def _key(table: str, entity: Mapping[str, Any]) -> Key:
    return table, str(entity["PartitionKey"]), str(entity["RowKey"])


def _plain(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The entity as the adapter writes it: no ETag, no ``None`` values."""
    return {k: copy.deepcopy(v) for k, v in entity.items() if k != ETAG and v is not None}
