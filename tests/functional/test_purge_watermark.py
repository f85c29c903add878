"""A purge releases only what came before it was asked for, on the local stack."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.sync.leases import LEASES, mailbox_partition
from tests.functional.conftest import Tenant
from tests.functional.test_calendar_power_tools import BEFORE, CUSTOMER
from tests.functional.test_calendar_power_tools import _job as calendar_job
from tests.functional.test_calendar_sync import at, meeting
from tests.functional.test_calendar_sync import connected as calendar_connected
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import _job, connected, stored_ids

pytestmark = pytest.mark.stack


def _leases(tenant: Tenant) -> TableClient:
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    return service.get_table_client(LEASES)


def _hold_connection(tenant: Tenant, upn: str, kind: str = "mail") -> dict[str, Any]:
    """Take a connection's lease as a running job would; return its keys."""
    partition = mailbox_partition(tenant.tenant_id, tenant.users[upn])
    keys = {"PartitionKey": partition, "RowKey": f"conn-{kind}"}
    expires = (datetime.now(UTC) + timedelta(seconds=60)).isoformat(timespec="milliseconds")
    _leases(tenant).upsert_entity({**keys, "owner": "a running job", "expiresAt": expires})
    return keys


def _wait_finished(tenant: Tenant, upn: str, status_url: str) -> dict[str, Any]:
    """Poll a purge's status until it completed or failed (at most 90 s)."""
    path = status_url.split("/api/", 1)[-1]
    deadline = time.monotonic() + 90
    while True:
        job = dict(tenant.stack.call("GET", path, tenant.token(upn)).json())
        if job["state"] in ("completed", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(1)


def test_purge_keeps_mail_a_sync_stored_after_the_purge_was_asked_for(tenant: Tenant) -> None:
    """Mail received after the request, synced before the purge job ran, survives the purge."""
    # GIVEN a stored mail, and the connection busy when the user asks for a purge
    stack = tenant.stack
    upn = connected(tenant, "pia", "Acme", "acme.example")
    old = message("a@acme.example", [upn], "before the purge", days_ago=2)
    stack.sim.load_messages(upn, "inbox", [old])
    tenant.sync()
    held = _hold_connection(tenant, upn)
    answer = stack.call("POST", "me/purges", tenant.token(upn), json={"kind": "mail"})
    answer.raise_for_status()
    time.sleep(2)

    # WHEN a mail arrives, a sync gets the connection before the purge job, then the job runs
    new = message("a@acme.example", [upn], "after the purge", days_ago=0)
    new["receivedDateTime"] = new["sentDateTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.sim.load_messages(upn, "inbox", [new])
    _leases(tenant).delete_entity(held["PartitionKey"], held["RowKey"])
    stack.run_function("mail_sync_worker", _job(tenant, upn))
    stack.wait_idle(queues=("mail-sync",))
    job = _wait_finished(tenant, upn, answer.json()["statusUrl"])
    tenant.sync()

    # THEN the purge took the old mail only, and the new one stays through later rounds
    assert (job["state"], job["counts"]) == ("completed", {"removed": 1, "keptShared": 0})
    assert stored_ids(tenant, "Acme") == [new["internetMessageId"]]


def test_calendar_purge_keeps_a_meeting_created_after_it_was_asked_for(tenant: Tenant) -> None:
    """A meeting created after the request, synced before the purge job ran, survives it."""
    # GIVEN a stored meeting, and the calendar connection busy when the user asks for a purge
    stack = tenant.stack
    tenant.add_company("Acme", ["acme.example"])
    upn = calendar_connected(tenant, "ida")
    stack.sim.add_event(upn, meeting("Old", upn, [CUSTOMER], at(2), createdDateTime=BEFORE))
    tenant.sync()
    held = _hold_connection(tenant, upn, "calendar")
    answer = stack.call("POST", "me/purges", tenant.token(upn), json={"kind": "calendar"})
    answer.raise_for_status()
    time.sleep(2)

    # WHEN a meeting is created, a sync gets the connection before the purge job, then it runs
    stack.sim.add_event(upn, meeting("New", upn, [CUSTOMER], at(3)))
    _leases(tenant).delete_entity(held["PartitionKey"], held["RowKey"])
    stack.run_function("calendar_sync_worker", calendar_job(tenant, upn))
    stack.wait_idle(queues=("calendar-sync",))
    job = _wait_finished(tenant, upn, answer.json()["statusUrl"])
    tenant.sync()

    # THEN the purge took the old meeting only, and the new one stays through later rounds
    assert (job["state"], job["counts"]) == ("completed", {"removed": 1, "keptShared": 0})
    assert [e["subject"] for e in tenant.company_events("Acme")] == ["New"]
