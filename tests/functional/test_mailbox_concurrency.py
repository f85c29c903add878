"""BR-06: at most 4 Graph requests in flight per mailbox, across workers; throttling never fails."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack.simulator import FaultRule
from shared.adapters.queues import JobQueue
from shared.adapters.tables import TableEntityStore
from shared.sync.connections import MAIL, connection_key
from shared.sync.leases import SLOTS_PER_MAILBOX, LeaseTable, mailbox_partition
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import _job, connected, last_round

pytestmark = pytest.mark.stack

DELTA = r"/messages/delta$"
MAILBOX_CONCURRENCY = "ApplicationThrottled"


def _mailbox(tenant: Tenant, alias: str, company: str, domain: str, count: int) -> str:
    """A connected user whose Inbox holds ``count`` customer mails and some internal mail.

    Workers cache a tenant's company index for a minute, so every company a test needs is made
    before its first sync.
    """
    upn = connected(tenant, alias, company, domain)
    mails = [message(f"a@{domain}", [upn], f"m{i}", days_ago=i / 10 + 0.1) for i in range(count)]
    internal = [message(f"colleague@{tenant.domain}", [upn], f"i{i}") for i in range(5)]
    tenant.stack.sim.load_messages(upn, "inbox", [*mails, *internal])
    return upn


def _summary(tenant: Tenant, company: str) -> list[str]:
    """What a company holds, by subject, without the ids and times that differ per copy."""
    return sorted(e["subject"] for e in tenant.company_emails(company))


def _throttled(tenant: Tenant, upn: str) -> list[int]:
    """The statuses of Graph requests for a user that answered 429, 503 or 504."""
    oid = tenant.users[upn]
    seen = tenant.stack.sim.requests_seen()
    return [r.status for r in seen if r.user == oid and r.status in (429, 503, 504)]


def _cursors(tenant: Tenant, upn: str) -> list[dict[str, Any]]:
    """The user's folder cursors as stored."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    partition = connection_key(tenant.tenant_id, tenant.users[upn], MAIL)
    rows = service.get_table_client("cursors").query_entities(
        "PartitionKey eq @pk", parameters={"pk": partition}
    )
    return [dict(row) for row in rows]


def _failed_invocations(tenant: Tenant, since: int) -> list[str]:
    """Host log lines of mail sync invocations that failed after byte offset ``since``."""
    with (tenant.stack.workdir / "host.log").open("rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", "replace").splitlines()
    return [
        line
        for line in lines
        if "invocation finished" in line and "mail_sync_worker" in line and "succeeded" not in line
    ]


def _log_size(tenant: Tenant) -> int:
    return (tenant.stack.workdir / "host.log").stat().st_size


def _poisoned(tenant: Tenant) -> int:
    connection = tenant.stack.env["AzureWebJobsStorage"]
    poison = QueueClient.from_connection_string(connection, "mail-sync-poison")
    return len(list(poison.peek_messages(max_messages=32)))


def test_six_jobs_for_one_mailbox_at_once_stay_within_four_requests(tenant: Tenant) -> None:
    """Six mail jobs for one user delivered together never exceed 4 requests in flight."""
    # GIVEN a user with 60 customer mails (three pages) behind a slow Graph, and a reference
    # user with the same mail, synced once without any fault
    reference = _mailbox(tenant, "una", "Beta", "beta.example", 60)
    upn = _mailbox(tenant, "tom", "Acme", "acme.example", 60)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, reference))
    tenant.stack.wait_idle()
    slow = FaultRule(DELTA, 0, service="graph", user=upn, count=None, delay_s=0.4)
    tenant.stack.sim.add_fault(slow)
    log_start, poisoned = _log_size(tenant), _poisoned(tenant)

    # WHEN six jobs for that user are sent at once by the product's own producer
    queue = JobQueue(
        QueueServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    )
    job = json.loads(_job(tenant, upn))
    assert queue.send_each("mail-sync", [job] * 6) == []
    tenant.stack.wait_idle()

    # THEN the mailbox never had more than 4 requests in flight and none was refused
    sim = tenant.stack.sim
    assert 1 <= sim.peak_concurrency(upn) <= SLOTS_PER_MAILBOX
    assert sim.concurrency_refusals(upn) == 0
    assert _throttled(tenant, upn) == []

    # AND the end state equals the unthrottled run, with one final deltaLink per folder
    assert _summary(tenant, "Acme") == _summary(tenant, "Beta")
    assert len(_summary(tenant, "Acme")) == 60
    cursors = _cursors(tenant, upn)
    assert len(cursors) == 2
    assert all(c["deltaLink"] and not c["nextLink"] for c in cursors)
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", None)
    assert _failed_invocations(tenant, log_start) == []
    assert _poisoned(tenant) == poisoned


def test_throttled_and_unavailable_graph_never_fails_the_job(tenant: Tenant) -> None:
    """429 with and without Retry-After, 503 and 504 mid-round: the job retries or re-queues."""
    # GIVEN a reference user synced without faults, and a user whose Graph, after the first
    # page, answers 429 (Retry-After 1), 429 (no Retry-After), 503 and 504 (Retry-After 1),
    # which makes the job re-queue itself, then 503 without Retry-After once more
    reference = _mailbox(tenant, "vic", "Beta", "beta.example", 60)
    upn = _mailbox(tenant, "wes", "Acme", "acme.example", 60)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, reference))
    tenant.stack.wait_idle()
    busy = {"error": {"code": "TooManyRequests", "message": "Too many requests."}}
    down = {"error": {"code": "serviceNotAvailable", "message": "Service unavailable."}}
    answers = [
        (429, busy, {"Retry-After": "1"}),
        (429, busy, {}),
        (503, down, {"Retry-After": "1"}),
        (504, down, {"Retry-After": "1"}),
        (503, down, {}),
    ]
    for status, body, headers in answers:
        rule = FaultRule(
            DELTA, status, service="graph", user=upn, body=body, headers=headers, after=1
        )
        tenant.stack.sim.add_fault(rule)
    log_start, poisoned = _log_size(tenant), _poisoned(tenant)

    # WHEN one job runs
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN every fault was served, no invocation failed, and the end state is the unthrottled one
    assert sorted(_throttled(tenant, upn)) == [429, 429, 503, 503, 504]
    assert _failed_invocations(tenant, log_start) == []
    assert _poisoned(tenant) == poisoned
    assert _summary(tenant, "Acme") == _summary(tenant, "Beta")
    assert len(_summary(tenant, "Acme")) == 60
    assert all(c["deltaLink"] and not c["nextLink"] for c in _cursors(tenant, upn))
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", None)


def test_mail_job_waits_on_the_queue_while_other_jobs_hold_every_slot(tenant: Tenant) -> None:
    """With the mailbox's four slots held elsewhere, the mail job re-queues, then completes."""
    # GIVEN four other jobs (calendar, sending, on other workers) holding every slot for 3 s
    upn = _mailbox(tenant, "xia", "Acme", "acme.example", 5)
    store = TableEntityStore(
        TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    )
    others = LeaseTable(store, lease_s=3)
    partition = mailbox_partition(tenant.tenant_id, tenant.users[upn])
    slots = [f"slot-{n}" for n in range(SLOTS_PER_MAILBOX)]
    held = [others.take(partition, slots, f"other-{n}") for n in range(SLOTS_PER_MAILBOX)]
    assert all(held)
    before = len(tenant.stack.sim.requests_seen())

    # WHEN the mail job runs, and the other jobs' leases run out without being released
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    time.sleep(1)
    graph_while_held = [
        r for r in tenant.stack.sim.requests_seen()[before:] if r.user == tenant.users[upn]
    ]
    tenant.stack.wait_idle()

    # THEN it made no request while the slots were taken, and completed afterwards
    assert graph_while_held == []
    assert len(tenant.company_emails("Acme")) == 5
    assert last_round(tenant, upn)["state"] == "active"


def _get_me(url: str, token: str, ca: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=30)


def test_simulator_refuses_a_fifth_concurrent_request_and_leases_prevent_it(
    tenant: Tenant,
) -> None:
    """Without leases the fifth concurrent request gets 429; through the slot leases none does."""
    # GIVEN two users whose Graph answers slowly, and Graph tokens for them
    sim, ca = tenant.stack.sim, str(tenant.stack.tls.ca_pem)
    free, leased = tenant.add_user("yan"), tenant.add_user("zoe")
    tokens = {}
    for upn in (free, leased):
        sim.add_fault(FaultRule(r"/me$", 0, service="graph", user=upn, count=None, delay_s=0.5))
        tokens[upn] = sim.issue_api_token(
            tenant.tenant_id,
            tenant.users[upn],
            upn=upn,
            audience="https://graph.microsoft.com",
            expires_in=1000 * 86_400,
        )
    url = f"{sim.graph_url}/me"

    # WHEN eight requests start at once for the first user, with nothing holding them back
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _get_me(url, tokens[free], ca), range(8)))

    # THEN some are refused as over the mailbox's concurrency limit
    refused = [a for a in answers if a.status_code == 429]
    assert refused
    assert refused[0].json()["error"]["code"] == MAILBOX_CONCURRENCY
    assert "MailboxConcurrency" in refused[0].json()["error"]["message"]
    assert refused[0].headers["Retry-After"].isdigit()
    assert sim.peak_concurrency(free) == SLOTS_PER_MAILBOX

    # WHEN eight workers each take a slot lease in Table Storage before their request
    store = TableEntityStore(
        TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    )
    partition = mailbox_partition(tenant.tenant_id, tenant.users[leased])
    slots = [f"slot-{n}" for n in range(SLOTS_PER_MAILBOX)]

    def leased_call(worker: int) -> int:
        table = LeaseTable(store)
        lease = None
        while lease is None:
            lease = table.take(partition, slots, f"worker-{worker}")
            if lease is None:
                time.sleep(0.05)
        try:
            return _get_me(url, tokens[leased], ca).status_code
        finally:
            table.release(lease)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(leased_call, range(8)))

    # THEN all succeed, in parallel but never more than 4 at once
    assert statuses == [200] * 8
    assert sim.concurrency_refusals(leased) == 0
    assert 2 <= sim.peak_concurrency(leased) <= SLOTS_PER_MAILBOX


def test_simulator_limit_can_be_switched_off_over_its_control_api(tenant: Tenant) -> None:
    """With the limit off the simulator only counts: six concurrent requests all succeed."""
    # GIVEN a slow Graph for a user and the limit switched off through /_sim
    sim, ca = tenant.stack.sim, str(tenant.stack.tls.ca_pem)
    upn = tenant.add_user("ari")
    sim.add_fault(FaultRule(r"/me$", 0, service="graph", user=upn, count=None, delay_s=0.5))
    token = sim.issue_api_token(
        tenant.tenant_id,
        tenant.users[upn],
        upn=upn,
        audience="https://graph.microsoft.com",
        expires_in=1000 * 86_400,
    )
    control = f"{sim.base_url}/_sim/concurrency"
    requests.post(control, json={"limit": None}, verify=ca, timeout=10).raise_for_status()
    try:
        # WHEN six requests start at once
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: _get_me(f"{sim.graph_url}/me", token, ca), range(6)))
    finally:
        requests.post(control, json={"limit": 4}, verify=ca, timeout=10).raise_for_status()

    # THEN none was refused, and the control API reports the peak it saw
    assert [a.status_code for a in answers] == [200] * 6
    stats = requests.get(f"{control}/{upn}", verify=ca, timeout=10).json()
    assert stats == {"peak": sim.peak_concurrency(upn), "refused": 0}
    assert stats["peak"] > SLOTS_PER_MAILBOX
