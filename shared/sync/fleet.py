"""What the fan-out reads across the fleet of connections, and the records it keeps on the way.

The fan-out reads due connections a page at a time across a span of tenants, in key order, with
only the fields its claims and jobs need. Two kinds of row of the ``connections`` table serve it:

- ``~tenants``: one row per tenant that ever had a connection, written with each consent; the
  fan-out timer lists this small partition instead of scanning every connection.
- ``~passed|<slot>``: one row per fan-out page that passed its next page on in that slot,
  keyed by the page and the page it passed on (:meth:`FleetIndex.pass_on_once`), so a
  retried or duplicated page passes it on once; the timer sweeps the rows of slots more than
  an hour old.

Known limitations: a tenant stays in ``~tenants`` after its last connection is gone (its fan-out
finds nothing); connections written before the index existed need one
:meth:`FleetIndex.rebuild_tenant_index` (``python -m shared.maintenance rebuild-tenant-index``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.errors import ConflictError
from shared.sync.connections import (
    ACTIVE,
    CALENDAR,
    ERROR,
    KINDS,
    MAIL,
    TABLE,
    connection_from_row,
    now_iso,
)
from shared.sync.schedule import slot_text

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from datetime import datetime

    from shared.adapters.tables import TableEntityStore
    from shared.sync.connections import Connection

# NOTE: table_key() escapes "~" as "~7E" and hashes as "~h…", so these never meet a tenant's key.
TENANT_INDEX = "~tenants"
PASSED_PREFIX = "~passed|"
"""Partitions, one per slot, of the fan-out pages that passed their successor on."""
FANOUT_FIELDS = ("PartitionKey", "RowKey", "tenantId", "userId", "kind", "state")
"""What the fan-out reads of a connection row: enough for its claim and its job, no token."""


class FleetIndex:
    """Reads connections across tenants and keeps the fan-out's records; a connection store part."""

    _tables: TableEntityStore

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
        found = [connection_from_row(row) for row in rows if _is_connection_row(row)]
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
        row = {"PartitionKey": _passed_partition(slot), "RowKey": page_id, "passedAt": now_iso()}
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
