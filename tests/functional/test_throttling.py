"""BR-06 through the host: 504 without Retry-After, and waits too long to sleep through."""

from __future__ import annotations

import time

import pytest
from azure.storage.queue import QueueClient

from devstack.simulator import FaultRule
from tests.functional.conftest import Tenant
from tests.functional.test_mailbox_concurrency import (
    DELTA,
    _cursors,
    _failed_invocations,
    _log_size,
    _mailbox,
    _poisoned,
    _summary,
    _throttled,
)
from tests.functional.test_sync_resilience import _job, last_round

pytestmark = pytest.mark.stack

GATEWAY_TIMEOUT = {"error": {"code": "GatewayTimeout", "message": "The gateway timed out."}}
THROTTLED = {"error": {"code": "ApplicationThrottled", "message": "Too many requests."}}


def reference_and_user(tenant: Tenant, names: tuple[str, str]) -> tuple[str, str]:
    """A reference user synced without faults and a user with the same mail, not synced yet."""
    reference = _mailbox(tenant, names[0], "Beta", "beta.example", 60)
    upn = _mailbox(tenant, names[1], "Acme", "acme.example", 60)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, reference))
    tenant.stack.wait_idle()
    return reference, upn


def assert_end_state_is_unthrottled(tenant: Tenant, upn: str) -> None:
    """The user's company holds what the reference holds, each folder ends on a deltaLink."""
    assert _summary(tenant, "Acme") == _summary(tenant, "Beta")
    assert len(_summary(tenant, "Acme")) == 60
    assert all(c["deltaLink"] and not c["nextLink"] for c in _cursors(tenant, upn))
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", None)


def requeue_lines(tenant: Tenant, since: int) -> list[str]:
    """Host log lines of sync jobs re-queued after byte offset ``since``."""
    with (tenant.stack.workdir / "host.log").open("rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", "replace").splitlines()
    return [line for line in lines if "sync job re-queued" in line]


def test_gateway_timeout_without_retry_after_is_retried_with_backoff(tenant: Tenant) -> None:
    """Two 504s without Retry-After mid-round are waited out in the job; nothing fails."""
    # GIVEN a user whose Graph answers 504 without Retry-After twice after the first page
    _, upn = reference_and_user(tenant, ("ula", "ugo"))
    rule = FaultRule(DELTA, 504, service="graph", user=upn, body=GATEWAY_TIMEOUT, count=2, after=1)
    tenant.stack.sim.add_fault(rule)
    log_start, poisoned = _log_size(tenant), _poisoned(tenant)

    # WHEN one job runs
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN both 504s were served and retried inside the job (no re-queue, no failed invocation),
    # and the end state equals the unthrottled run
    assert _throttled(tenant, upn) == [504, 504]
    assert requeue_lines(tenant, log_start) == []
    assert _failed_invocations(tenant, log_start) == []
    assert _poisoned(tenant) == poisoned
    assert_end_state_is_unthrottled(tenant, upn)


def test_long_retry_after_requeues_the_job_with_a_visibility_delay(tenant: Tenant) -> None:
    """A Retry-After longer than a job may sleep ends the invocation; the queue holds the job."""
    # GIVEN a user whose Graph asks, after the first page, to come back in 15 seconds
    _, upn = reference_and_user(tenant, ("vea", "vin"))
    rule = FaultRule(
        DELTA, 429, service="graph", user=upn, body=THROTTLED, headers={"Retry-After": "15"}
    )
    rule.after = 1
    tenant.stack.sim.add_fault(rule)
    log_start, poisoned = _log_size(tenant), _poisoned(tenant)
    queue = QueueClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"], "mail-sync")

    # WHEN one job runs
    started = time.monotonic()
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle(queues=())
    ended_in = time.monotonic() - started

    # THEN the invocation ended without sleeping 15 s, and the job waits on the queue, invisible,
    # for the Retry-After
    assert ended_in < 10, ended_in
    [line] = requeue_lines(tenant, log_start)
    assert "reason=throttled" in line
    assert "delay_s=16" in line
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.peek_messages(max_messages=32)) == []

    # WHEN the host delivers it once the delay has passed
    tenant.stack.wait_idle()

    # THEN the round resumed where it stopped and the end state equals the unthrottled run
    assert _throttled(tenant, upn) == [429]
    assert _failed_invocations(tenant, log_start) == []
    assert _poisoned(tenant) == poisoned
    assert_end_state_is_unthrottled(tenant, upn)


def test_retry_after_beyond_what_a_queue_can_delay_is_capped(tenant: Tenant) -> None:
    """A Retry-After of weeks re-queues the job at the longest delay the product allows."""
    # GIVEN a user whose Graph asks, after the first page, to come back in 30 days
    _, upn = reference_and_user(tenant, ("wyn", "wim"))
    month = str(30 * 86_400)
    rule = FaultRule(
        DELTA, 429, service="graph", user=upn, body=THROTTLED, headers={"Retry-After": month}
    )
    rule.after = 1
    tenant.stack.sim.add_fault(rule)
    log_start, poisoned = _log_size(tenant), _poisoned(tenant)
    queue = QueueClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"], "mail-sync")

    # WHEN one job runs
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle(queues=())

    # THEN the invocation succeeded and re-queued the job for an hour, invisible until then
    assert _failed_invocations(tenant, log_start) == []
    [line] = requeue_lines(tenant, log_start)
    assert "reason=throttled" in line
    assert "delay_s=3600" in line
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.peek_messages(max_messages=32)) == []

    # WHEN the job is delivered early (the test cannot wait an hour)
    queue.clear_messages()
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN the end state equals the unthrottled run and nothing was poisoned
    assert _poisoned(tenant) == poisoned
    assert_end_state_is_unthrottled(tenant, upn)


def test_retry_after_too_long_to_count_requeues_the_job_at_the_cap(tenant: Tenant) -> None:
    """A Retry-After of 400 digits re-queues the job for an hour; the invocation never fails."""
    # GIVEN a user whose Graph asks, after the first page, for a wait no float can hold
    _, upn = reference_and_user(tenant, ("xan", "xia"))
    rule = FaultRule(
        DELTA, 429, service="graph", user=upn, body=THROTTLED, headers={"Retry-After": "9" * 400}
    )
    rule.after = 1
    tenant.stack.sim.add_fault(rule)
    log_start, poisoned = _log_size(tenant), _poisoned(tenant)
    queue = QueueClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"], "mail-sync")

    # WHEN one job runs
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle(queues=())

    # THEN the invocation succeeded and re-queued the job for the capped hour
    assert _failed_invocations(tenant, log_start) == []
    [line] = requeue_lines(tenant, log_start)
    assert "reason=throttled" in line
    assert "delay_s=3600" in line
    assert queue.get_queue_properties().approximate_message_count == 1

    # WHEN the job is delivered early (the test cannot wait an hour)
    queue.clear_messages()
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    tenant.stack.wait_idle()

    # THEN the end state equals the unthrottled run and nothing was poisoned
    assert _poisoned(tenant) == poisoned
    assert_end_state_is_unthrottled(tenant, upn)
