"""The local stack for functional tests: one per test session, shared by unique tenants."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import LocalStack
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.sync.connections import TABLE as CONNECTIONS
from shared.sync.slotclaims import SLOT_PREFIX, SLOT_SHARDS


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Azurite, the Microsoft 365 simulator and the functions host, started for real.

    The 10-minute timer is switched off with the host's ``AzureWebJobs.<name>.Disabled``
    setting: tests run their rounds through the admin API, and a timer firing in the middle of
    one would add a round of its own to what the test counts.
    """
    disabled = {"AzureWebJobs.sync_fanout.Disabled": "true"}
    local = LocalStack(tmp_path_factory.mktemp("stack"), extra_env=disabled).start()
    yield local
    local.stop()


@dataclass
class Tenant:
    """A tenant set up through the admin API, with helpers to act as its users."""

    stack: LocalStack
    tenant_id: str
    domain: str
    admin: str
    users: dict[str, str] = field(default_factory=dict)
    companies: dict[str, str] = field(default_factory=dict)

    def add_user(self, alias: str, roles: tuple[str, ...] = ("Member",)) -> str:
        """Register a user with product roles in the product and the simulator; return their upn."""
        upn = f"{alias}@{self.domain}"
        oid = str(uuid.uuid4())
        body = {"upn": upn, "displayName": alias.title(), "roles": list(roles)}
        self.stack.call("PUT", f"admin/users/{oid}", self.admin, json=body).raise_for_status()
        self.stack.sim.add_user(self.tenant_id, upn, display_name=alias.title(), oid=oid)
        self.users[upn] = oid
        return upn

    def token(self, upn: str) -> str:
        """An API token for one of the tenant's users."""
        return self.stack.token(self.tenant_id, self.users[upn], upn=upn)

    def add_company(self, name: str, domains: list[str], contacts: list[str] | None = None) -> str:
        """Create a company through the admin API; return its id."""
        body: dict[str, Any] = {"name": name, "domains": domains, "contacts": contacts or []}
        response = self.stack.call("POST", "admin/companies", self.admin, json=body)
        response.raise_for_status()
        company_id = str(response.json()["id"])
        self.companies[name] = company_id
        return company_id

    def sync(self) -> None:
        """Run one sync round of this tenant through the fan-out worker and wait for the workers.

        Each call first forgets the tenant's slot claims, as if the slot had passed, so calls
        within one 10-minute timer slot still each run a round; two timer runs for one slot
        would enqueue nothing the second time (BR-15). The timer itself is tested in
        ``test_fanout.py``.
        """
        self.forget_slot_claims()
        job = {"kind": "fanout", "tenant": self.tenant_id, "slot": datetime.now(UTC).isoformat()}
        self.stack.run_function("sync_fanout_worker", json.dumps(job))
        self.stack.wait_idle(queues=("sync-fanout", "mail-sync", "calendar-sync"))

    def forget_slot_claims(self) -> None:
        """Delete the slot claims of this tenant's connections, in every shard, and the slot of
        their last round, so that the slot's jobs run again."""
        assert self.stack.azurite is not None
        service = TableServiceClient.from_connection_string(self.stack.azurite.connection_string)
        tables = TableEntityStore(service)
        for row in list(tables.list_partition(CONNECTIONS, table_key(self.tenant_id))):
            if row.get("lastSlot"):
                keys = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}
                tables.upsert(CONNECTIONS, {**keys, "lastSlot": ""})
        # A claim's row key is the connection's id: the tenant's key, "|", its row key.
        prefix = table_key(self.tenant_id) + "|"
        where = (
            "PartitionKey ge @low and PartitionKey le @high and RowKey gt @first and RowKey lt @end"
        )
        bounds = {
            "low": f"{SLOT_PREFIX}00",
            "high": f"{SLOT_PREFIX}{SLOT_SHARDS - 1:02x}",
            "first": prefix,
            "end": prefix[:-1] + chr(ord("|") + 1),
        }
        for row in list(tables.query(CONNECTIONS, where, bounds)):
            tables.delete(CONNECTIONS, str(row["PartitionKey"]), str(row["RowKey"]))

    def company_emails(self, company: str) -> list[dict[str, Any]]:
        """Every stored email of a company, through the read API, newest first."""
        return self.company_items(company, "emails")

    def company_events(self, company: str) -> list[dict[str, Any]]:
        """Every stored event of a company, through the read API, latest start first."""
        return self.company_items(company, "events")

    def company_items(self, company: str, kind: str) -> list[dict[str, Any]]:
        """Every stored email or event of a company, through the read API, page by page."""
        emails: list[dict[str, Any]] = []
        token = None
        while True:
            params: dict[str, Any] = {"pageSize": 10}
            if token:
                params["continuationToken"] = token
            path = f"companies/{self.companies[company]}/{kind}"
            page = self.stack.call("GET", path, self.admin, params=params)
            page.raise_for_status()
            emails.extend(page.json()["items"])
            token = page.json().get("continuationToken")
            if not token:
                return emails


@pytest.fixture
def tenant(stack: LocalStack) -> Tenant:
    """A fresh tenant with its own domain, set up by an admin."""
    return new_tenant(stack)


def new_tenant(stack: LocalStack) -> Tenant:
    """Set up a tenant with its own domain through the admin API; tests needing two call it."""
    tenant_id = str(uuid.uuid4())
    domain = f"t{tenant_id[:8]}.example"
    admin = stack.token(tenant_id, str(uuid.uuid4()), roles=("Admin",), upn=f"admin@{domain}")
    body = {"name": "Test tenant", "ownDomains": [domain], "backfillDays": 360}
    stack.call("PUT", "admin/tenant", admin, json=body).raise_for_status()
    return Tenant(stack, tenant_id, domain, admin)
