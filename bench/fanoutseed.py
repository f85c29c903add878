"""Seeding for the fan-out benchmark: active mail connection rows, written in batched transactions.

:func:`seed_connections` spreads N connections over many tenants. One tenant holds a tenth of
them (:data:`BIG_TENANT_SHARE`), so the fan-out has to split it into pages; the others sit in
tenants of :data:`TENANT_SIZE`. Each tenant's rows go to Azurite through
:meth:`TableEntityStore.upsert_batch` (transactions of up to 100 rows of one partition), and the
tenant is then added to the fleet's tenant index, which stage 1 of the fan-out lists. The
tenants are dealt out to :data:`SEED_PROCESSES` processes of :data:`SEED_WORKERS` threads each.

Known limitations: every row carries a 1 KB placeholder token cache (:data:`TOKEN_CACHE`) where a
real sealed cache is a few KB; stage 2 of the fan-out does not read it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, cast

from azure.data.tables import TableServiceClient

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.sync.connections import ACTIVE, MAIL, TABLE
from shared.sync.connectionstore import ConnectionStore

TENANT_SIZE = 100
BIG_TENANT_SHARE = 10
SEED_PROCESSES = 2
SEED_WORKERS = 4
TOKEN_CACHE = "x" * 1024


def seed_connections(connection_string: str, size: int) -> list[str]:
    """Write ``size`` connection rows and index their tenants, from SEED_PROCESSES processes.

    Seeding is not timed, and batching rows costs the client more CPU than Azurite, so the
    tenants are split over processes, each writing on SEED_WORKERS threads.
    """
    big = size // BIG_TENANT_SHARE
    counts = [big] + [TENANT_SIZE] * ((size - big) // TENANT_SIZE)
    counts[-1] += size - sum(counts)
    tenants = [(str(uuid.uuid4()), count) for count in counts]
    # The big tenant first, so no process is left with it at the end.
    parts = [tenants[first::SEED_PROCESSES] for first in range(SEED_PROCESSES)]
    with ProcessPoolExecutor(max_workers=SEED_PROCESSES) as pool:
        list(pool.map(_seed_part, [connection_string] * SEED_PROCESSES, parts))
    return [tenant for tenant, _ in tenants]


def _seed_part(connection_string: str, tenants: list[tuple[str, int]]) -> None:
    tables = TableEntityStore(TableServiceClient.from_connection_string(connection_string))
    store = ConnectionStore(tables, cast("Any", None), cast("Any", None))

    def seed_tenant(tenant: tuple[str, int]) -> None:
        rows = [_connection_row(tenant[0], f"user-{i:06d}") for i in range(tenant[1])]
        tables.upsert_batch(TABLE, rows)
        store.index_tenant(tenant[0])

    with ThreadPoolExecutor(max_workers=SEED_WORKERS) as pool:
        list(pool.map(seed_tenant, tenants))


def _connection_row(tenant: str, user: str) -> dict[str, Any]:
    return {
        "PartitionKey": table_key(tenant),
        "RowKey": table_key(user, MAIL),
        "tenantId": tenant,
        "userId": user,
        "kind": MAIL,
        "state": ACTIVE,
        "upn": f"{user}@bench.example",
        "homeAccountId": f"{user}.{tenant}",
        "scopes": '["Mail.Read"]',
        "folders": "[]",
        "tokenCache": TOKEN_CACHE,
        "tokenKeyVersion": "bench",
    }
