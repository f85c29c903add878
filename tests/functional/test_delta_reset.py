"""BR-01: a delta link Graph no longer knows resets that folder alone, and resets are bounded."""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from devstack.simulator import FaultRule
from shared.sync.connections import MAIL, connection_key
from tests.functional.conftest import Tenant
from tests.functional.test_calendar_sync import at, meeting
from tests.functional.test_calendar_sync import connected as calendar_connected
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import (
    _job,
    connected,
    graph_calls,
    last_round,
    stored_ids,
)

pytestmark = pytest.mark.stack

EXPIRIES = [
    pytest.param(410, "resyncRequired", id="410-resyncRequired"),
    pytest.param(410, "SyncStateInvalid", id="410-SyncStateInvalid"),
    pytest.param(400, "SyncStateInvalid", id="400-SyncStateInvalid"),
]


def two_folder_mailbox(tenant: Tenant, alias: str) -> tuple[str, str, str]:
    """A user syncing Inbox (three customer mails) and Archive (two); return upn and folder ids."""
    upn = connected(tenant, alias, "Acme", "acme.example")
    inbox = tenant.stack.sim.folder_id(upn, "inbox")
    archive = tenant.stack.sim.folder_id(upn, "archive")
    body = {"folderIds": [inbox, archive]}
    chosen = tenant.stack.call("PUT", "me/connections/mail/folders", tenant.token(upn), json=body)
    chosen.raise_for_status()
    mail = [message("a@acme.example", [upn], f"in {i}", days_ago=i + 1) for i in range(3)]
    tenant.stack.sim.load_messages(upn, "inbox", mail)
    kept = [message("a@acme.example", [upn], f"arch {i}", days_ago=i + 5) for i in range(2)]
    tenant.stack.sim.load_messages(upn, "archive", kept)
    return upn, inbox, archive


def expired(folder_id: str, upn: str, status: int, code: str, count: int) -> FaultRule:
    """Graph answering a folder's delta requests as if it forgot the folder's sync state."""
    body = {"error": {"code": code, "message": "The sync state is not valid. Resync."}}
    path = rf"/mailFolders/{re.escape(folder_id)}/messages/delta$"
    return FaultRule(path, status, service="graph", user=upn, body=body, count=count)


def cursors(tenant: Tenant, upn: str) -> dict[str, dict[str, Any]]:
    """The user's stored folder cursors, by folder id."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    partition = connection_key(tenant.tenant_id, tenant.users[upn], MAIL)
    rows = service.get_table_client("cursors").query_entities(
        "PartitionKey eq @pk", parameters={"pk": partition}
    )
    return {str(row["folderId"]): dict(row) for row in rows}


@pytest.mark.parametrize(("status", "code"), EXPIRIES)
def test_expired_delta_link_resets_only_its_folder(tenant: Tenant, status: int, code: str) -> None:
    """Inbox's refused deltaLink resyncs Inbox from scratch; Archive goes on from its own."""
    # GIVEN two synced folders, a new mail in Archive, and Graph refusing Inbox's deltaLink once
    upn, inbox, archive = two_folder_mailbox(tenant, "eva")
    tenant.sync()
    before = cursors(tenant, upn)
    newer = message("a@acme.example", [upn], "arch new", days_ago=0.01)
    tenant.stack.sim.load_messages(upn, "archive", [newer])
    tenant.stack.sim.add_fault(expired(inbox, upn, status, code, count=1))
    inbox_reads, archive_reads = graph_calls(tenant, upn, inbox), graph_calls(tenant, upn, archive)

    # WHEN the next round runs
    tenant.sync()

    # THEN Inbox was asked twice (refused, then from scratch) and re-read its three mails, while
    # Archive was asked once and read only its new mail: 3 + 1 seen, not 3 + 3
    state = last_round(tenant, upn)
    assert graph_calls(tenant, upn, inbox) - inbox_reads == 2
    assert graph_calls(tenant, upn, archive) - archive_reads == 1
    assert state["lastRound"]["seen"] == 4

    # AND both folders hold new deltaLinks, nothing is duplicated and the connection is healthy
    after = cursors(tenant, upn)
    assert all(after[f]["deltaLink"] and not after[f]["nextLink"] for f in (inbox, archive))
    assert after[inbox]["deltaLink"] != before[inbox]["deltaLink"]
    ids = stored_ids(tenant, "Acme")
    assert len(ids) == len(set(ids)) == 6
    assert (state["state"], state["lastError"]) == ("active", None)


def test_second_expiry_in_one_job_backs_off_through_the_queue(tenant: Tenant) -> None:
    """Refused again right after its reset, a folder is not retried in a loop: the job waits."""
    # GIVEN two synced folders and Graph refusing Inbox's delta twice in a row
    upn, inbox, _ = two_folder_mailbox(tenant, "fay")
    tenant.sync()
    tenant.stack.sim.add_fault(expired(inbox, upn, 410, "resyncRequired", count=2))
    inbox_reads, log_start = graph_calls(tenant, upn, inbox), _log_size(tenant)
    queue = QueueClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"], "mail-sync")

    # WHEN one job runs through the host
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle(queues=())

    # THEN Inbox was asked exactly twice, the connection says it backs off, and the job waits on
    # the queue, invisible, five minutes out
    assert graph_calls(tenant, upn, inbox) - inbox_reads == 2
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", "delta_reset_backoff")
    assert state["explanation"]["code"] == "delta_reset_backoff"
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.peek_messages(max_messages=32)) == []
    requeued = _log_lines(tenant, log_start, "sync job re-queued")
    assert len(requeued) == 1
    assert "reason=delta_reset_backoff" in requeued[0]
    assert "delay_s=300" in requeued[0]

    # WHEN the delayed job is delivered (here at once, not five minutes later)
    queue.clear_messages()
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN the folder resyncs, nothing is duplicated and the error is gone
    ids = stored_ids(tenant, "Acme")
    assert len(ids) == len(set(ids)) == 5
    assert last_round(tenant, upn)["lastError"] is None


def _log_size(tenant: Tenant) -> int:
    return (tenant.stack.workdir / "host.log").stat().st_size


def _log_lines(tenant: Tenant, since: int, phrase: str) -> list[str]:
    with (tenant.stack.workdir / "host.log").open("rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", "replace").splitlines()
    return [line for line in lines if phrase in line]


def test_expired_calendar_delta_link_resyncs_the_window_without_duplicates(
    tenant: Tenant,
) -> None:
    """A calendar whose delta link Graph forgot resyncs its window; each meeting stays once."""
    # GIVEN a connected calendar holding two customer meetings, synced once, then Graph
    # forgetting its sync state
    tenant.add_company("Acme", ["acme.example"])
    upn = calendar_connected(tenant, "gil")
    for days in (2, 3):
        tenant.stack.sim.add_event(
            upn, meeting(f"Review {days}", upn, ["c@acme.example"], at(days))
        )
    tenant.sync()
    tenant.stack.sim.invalidate_calendar_sync_state(upn)
    tenant.stack.sim.add_event(upn, meeting("Review 4", upn, ["c@acme.example"], at(4)))

    # WHEN the next round runs
    tenant.sync()

    # THEN the three meetings are stored once each and the connection is healthy
    subjects = sorted(e["subject"] for e in tenant.company_events("Acme"))
    assert subjects == ["Review 2", "Review 3", "Review 4"]
    [calendar] = [
        c
        for c in tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
        if c["kind"] == "calendar"
    ]
    assert (calendar["state"], calendar["lastError"]) == ("active", None)
    assert calendar["lastRound"]["fullRound"] is True
