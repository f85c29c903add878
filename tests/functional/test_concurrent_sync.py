"""A mail job's folders synced at once, on Azurite and the simulator: slots, crashes, continuations.

A mail job holds up to three of the mailbox's four Graph request slots and syncs that many
folders at once, one request in flight per folder; these tests check the simulator's view of
it (never more requests in flight than slots held), that a worker killed mid-round still ends
with the stored state of an uninterrupted run, and that a job continuing a round after its page
budget does not read the folders the round already finished.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devstack.simulator import FaultRule
from shared.adapters.tables import TableEntityStore
from shared.settings import Settings
from shared.sync.connections import MAIL, connection_key
from shared.sync.leases import MAIL_SLOTS, LeaseTable, mailbox_partition
from shared.sync.mail import MailSyncService
from shared.wiring import Services
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import _job, connected, graph_calls, stored_state

pytestmark = pytest.mark.stack

FOLDERS = ("inbox", "sentitems", "archive")
DELTA = r"/messages/delta$"


def three_folders(
    tenant: Tenant, alias: str, company: str, domain: str, sizes: Sequence[int]
) -> str:
    """A connected user syncing Inbox, Sent Items and Archive, with customer mail in each."""
    upn = connected(tenant, alias, company, domain)
    ids = [tenant.stack.sim.folder_id(upn, folder) for folder in FOLDERS]
    body = {"folderIds": ids}
    chosen = tenant.stack.call("PUT", "me/connections/mail/folders", tenant.token(upn), json=body)
    chosen.raise_for_status()
    for folder, size in zip(FOLDERS, sizes, strict=True):
        mails = [
            message(f"a@{domain}", [upn], f"{folder}-{n}", days_ago=n / 10 + 0.1)
            for n in range(size)
        ]
        tenant.stack.sim.load_messages(upn, folder, mails)
    return upn


def cursors(tenant: Tenant, upn: str) -> list[dict[str, Any]]:
    """The user's folder cursors as stored."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    partition = connection_key(tenant.tenant_id, tenant.users[upn], MAIL)
    rows = service.get_table_client("cursors").query_entities(
        "PartitionKey eq @pk", parameters={"pk": partition}
    )
    return [dict(row) for row in rows]


def hold_slots(tenant: Tenant, upn: str, count: int) -> None:
    """Let ``count`` other jobs (calendar, sending) hold slots of the mailbox for a minute."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    table = LeaseTable(TableEntityStore(service), lease_s=60)
    partition = mailbox_partition(tenant.tenant_id, tenant.users[upn])
    slots = [f"slot-{n}" for n in range(4)]
    for n in range(count):
        assert table.take(partition, slots, f"other-job-{n}") is not None


def test_a_mail_job_has_several_requests_in_flight_but_never_more_than_its_slots(
    tenant: Tenant,
) -> None:
    """Three folders behind a slow Graph: 2 or 3 requests in flight at once, never over 3."""
    # GIVEN a user whose three folders hold 60 customer mails each (three pages) behind a
    # Graph that takes 0.3 s per delta page and enforces Outlook's 4 per mailbox
    upn = three_folders(tenant, "ivy", "Acme", "acme.example", (60, 60, 60))
    tenant.stack.sim.set_mailbox_concurrency(4)
    slow = FaultRule(DELTA, 0, service="graph", user=upn, count=None, delay_s=0.3)
    tenant.stack.sim.add_fault(slow)

    # WHEN the job runs on the host
    try:
        tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
        tenant.stack.wait_idle()
    finally:
        tenant.stack.sim.clear_faults()

    # THEN its folders overlapped, within the three slots it held, and nothing was refused
    sim = tenant.stack.sim
    assert 2 <= sim.peak_concurrency(upn) <= MAIL_SLOTS
    assert sim.concurrency_refusals(upn) == 0
    assert len(tenant.company_emails("Acme")) == 180
    assert all(c["deltaLink"] and not c["nextLink"] for c in cursors(tenant, upn))


def test_a_mail_job_with_two_free_slots_keeps_two_requests_in_flight_at_most(
    tenant: Tenant,
) -> None:
    """With two of four slots held by other jobs, the mail job never has more than 2 in flight."""
    # GIVEN a user with three folders behind a slow Graph, two of whose slots other jobs hold
    upn = three_folders(tenant, "jay", "Acme", "acme.example", (60, 60, 60))
    slow = FaultRule(DELTA, 0, service="graph", user=upn, count=None, delay_s=0.3)
    tenant.stack.sim.add_fault(slow)
    hold_slots(tenant, upn, 2)

    # WHEN the job runs on the host
    try:
        tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
        tenant.stack.wait_idle()
    finally:
        tenant.stack.sim.clear_faults()

    # THEN it ran with the two slots left, and synced everything
    assert 1 <= tenant.stack.sim.peak_concurrency(upn) <= 2
    assert tenant.stack.sim.concurrency_refusals(upn) == 0
    assert len(tenant.company_emails("Acme")) == 180


def test_worker_killed_while_three_folders_sync_ends_as_an_uninterrupted_run(
    tenant: Tenant,
) -> None:
    """A worker killed with several folders mid-page resumes to the uninterrupted end state."""
    # GIVEN a reference user whose three folders (75, 50 and 60 messages) were synced without
    # interruption, and a user with the same mail from another company whose delta pages,
    # after the first three, take five seconds each
    sizes = (75, 50, 60)
    reference = three_folders(tenant, "kim", "Beta", "beta.example", sizes)
    upn = three_folders(tenant, "lou", "Acme", "acme.example", sizes)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, reference))
    tenant.stack.wait_idle()
    slow = FaultRule(DELTA, 0, service="graph", user=upn, count=None, after=3, delay_s=5)
    tenant.stack.sim.add_fault(slow)
    baseline = graph_calls(tenant, upn, "/messages/delta")

    # WHEN the worker is killed while its folders wait for their slow pages, and the job is
    # delivered again to a new worker
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    deadline = time.monotonic() + 30
    while graph_calls(tenant, upn, "/messages/delta") < baseline + 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    tenant.stack.kill_host()
    tenant.stack.sim.clear_faults()
    queue = QueueClient.from_connection_string(
        tenant.stack.env["AzureWebJobsStorage"],
        "mail-sync",
        message_encode_policy=TextBase64EncodePolicy(),
    )
    queue.clear_messages()
    queue.send_message(_job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN the stored emails, their companies and holders equal the uninterrupted run's, with
    # every folder's round finished
    state = stored_state(tenant, upn, "Acme")
    assert state == stored_state(tenant, reference, "Beta")
    assert len(state) == sum(sizes)
    rows = cursors(tenant, upn)
    assert len(rows) == 3
    assert all(c["deltaLink"] and not c["nextLink"] for c in rows)


@dataclass
class CapturingQueue:
    """The job queue as the sync service uses it, keeping what it sends instead."""

    sent: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        self.sent.append((queue, dict(job), delay_s))


def test_continuation_jobs_do_not_read_folders_their_round_finished(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget of three pages, each folder is read exactly its pages over the round."""
    # GIVEN a user whose Inbox and Sent Items fit one page each and whose Archive takes five,
    # and a mail worker in this process reading at most three pages per job
    upn = three_folders(tenant, "max", "Acme", "acme.example", (10, 5, 120))
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, tenant.stack.env[name])
    services = Services(Settings.from_env(tenant.stack.env))
    queue = CapturingQueue()
    worker = MailSyncService(
        connections=services.connections,
        graph=services.graph,
        directory=services.directory,
        emails=services.emails,
        queue=queue,  # type: ignore[arg-type]
        tables=services.tables,
        page_budget=3,
    )
    folder_ids = [tenant.stack.sim.folder_id(upn, folder) for folder in FOLDERS]
    before = [graph_calls(tenant, upn, folder_id) for folder_id in folder_ids]

    # WHEN the job runs, then each continuation it sends, until the round completes
    job: dict[str, Any] = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}
    continuations: list[dict[str, Any]] = []
    for _ in range(10):
        stats = worker.run(job)
        assert stats is not None
        if stats.complete:
            break
        (_, job, delay) = queue.sent.pop()
        assert delay == 0
        continuations.append(job)

    # THEN the round took continuations, they named finished folders, and every folder was read
    # exactly as many pages as it has (a finished folder read again costs one more page)
    assert len(continuations) >= 2
    assert any(job.get("done") for job in continuations)
    after = [graph_calls(tenant, upn, folder_id) for folder_id in folder_ids]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 5]
    assert len(tenant.company_emails("Acme")) == 135


def test_continuation_after_a_reselection_names_only_folders_still_chosen(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folders unselected mid-round leave the continuation's done list; the round completes."""
    # GIVEN a round cut by a budget of three pages after Inbox and Sent Items finished
    upn = three_folders(tenant, "rex", "Acme", "acme.example", (10, 5, 200))
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, tenant.stack.env[name])
    services = Services(Settings.from_env(tenant.stack.env))
    queue = CapturingQueue()
    worker = MailSyncService(
        connections=services.connections,
        graph=services.graph,
        directory=services.directory,
        emails=services.emails,
        queue=queue,  # type: ignore[arg-type]
        tables=services.tables,
        page_budget=3,
    )
    job: dict[str, Any] = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}
    worker.run(job)
    (_, job, _) = queue.sent.pop()
    inbox, sent, archive = (tenant.stack.sim.folder_id(upn, folder) for folder in FOLDERS)
    assert job.get("done")
    assert set(job["done"]) <= {inbox, sent}

    # WHEN the user keeps only Archive and the continuation runs, cut again by its budget
    body = {"folderIds": [archive]}
    chosen = tenant.stack.call("PUT", "me/connections/mail/folders", tenant.token(upn), json=body)
    chosen.raise_for_status()
    stats = worker.run(job)

    # THEN its own continuation names none of the unselected folders, and the round completes
    assert stats is not None
    assert stats.complete is False
    (_, job, _) = queue.sent.pop()
    assert "done" not in job
    for _ in range(5):
        stats = worker.run(job)
        assert stats is not None
        if stats.complete:
            break
        (_, job, _) = queue.sent.pop()
        assert "done" not in job
    assert stats.complete is True
