"""Operator commands of ``shared.maintenance`` run for real against the local stack."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import ROOT, LocalStack
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.sync.connections import MAIL, TABLE
from shared.sync.fleet import TENANT_INDEX

pytestmark = pytest.mark.stack


def test_rebuild_tenant_index_indexes_tenants_stored_before_the_index(stack: LocalStack) -> None:
    """A connection written without its tenant's index row is fanned out after the rebuild."""
    # GIVEN a connection row stored the way releases before the tenant index stored it
    assert stack.azurite is not None
    service = TableServiceClient.from_connection_string(stack.azurite.connection_string)
    tables = TableEntityStore(service)
    tables.ensure_tables()
    tenant = str(uuid.uuid4())
    row = {
        "PartitionKey": table_key(tenant),
        "RowKey": table_key("user-1", MAIL),
        "tenantId": tenant,
        "userId": "user-1",
        "kind": MAIL,
        "state": "active",
    }
    tables.upsert(TABLE, row)
    assert tables.get(TABLE, TENANT_INDEX, table_key(tenant)) is None

    # WHEN an operator runs the rebuild with the app's settings, twice
    env = {**os.environ, **stack.env}
    command = [sys.executable, "-m", "shared.maintenance", "rebuild-tenant-index"]
    runs = [
        subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        for _ in range(2)
    ]

    # THEN both succeeded and the tenant is indexed once
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    assert "tenant index rebuilt" in runs[0].stdout
    indexed = tables.get(TABLE, TENANT_INDEX, table_key(tenant))
    assert indexed is not None
    assert indexed["tenantId"] == tenant
