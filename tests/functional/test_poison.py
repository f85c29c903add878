"""Poisoned mail jobs are visible on their connection (BR-14), through the local host."""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.adapters.queues import MAIL_SYNC_POISON_QUEUE, JobQueue
from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def producer(tenant: Tenant) -> JobQueue:
    """The product's own queue producer, on the stack's storage."""
    service = QueueServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    return JobQueue(service)


def poison(tenant: Tenant, *jobs: dict[str, Any]) -> None:
    """Put jobs on mail-sync-poison as the host does after the last attempt, and wait."""
    queue = producer(tenant)
    for job in jobs:
        queue.send(MAIL_SYNC_POISON_QUEUE, job)
    tenant.stack.wait_idle(queues=(MAIL_SYNC_POISON_QUEUE,))


def listed(tenant: Tenant, upn: str) -> dict[str, Any]:
    items = tenant.stack.call("GET", "admin/connections", tenant.admin).json()["items"]
    return next(item for item in items if item["upn"] == upn)


def test_poisoned_job_marks_its_connection_error(tenant: Tenant) -> None:
    """A mail job in the poison queue moves its connection to error with job_poisoned."""
    # GIVEN a connected user
    upn = tenant.add_user("pia")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    job = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}

    # WHEN its job lands in mail-sync-poison, sent by the real producer
    poison(tenant, {**job, "slot": "2025-06-01T12:10:00+00:00"})

    # THEN the connection shows the error, when it happened and what it means
    shown = listed(tenant, upn)
    assert shown["state"] == "error"
    assert shown["lastError"] == "job_poisoned"
    assert shown["lastErrorAt"]
    assert "five times" in shown["explanation"]["summary"]
    mine = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert [(c["state"], c["lastError"]) for c in mine] == [("error", "job_poisoned")]


def test_poisoned_job_keeps_reauth_required(tenant: Tenant) -> None:
    """A connection waiting for consent keeps that state and its code when a job is poisoned."""
    # GIVEN a user whose grant Microsoft revoked, seen by a sync round
    upn = tenant.add_user("quin")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.stack.sim.revoke_refresh_tokens(upn, error_code=50173)
    # Past the cached access token's hour, so the round must use the revoked refresh token.
    tenant.stack.sim.advance_time(2 * 3600)
    tenant.sync()

    # WHEN one of its jobs is poisoned
    poison(tenant, {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]})

    # THEN it still asks the user to connect again
    shown = listed(tenant, upn)
    assert (shown["state"], shown["lastError"]) == ("reauth_required", "invalid_grant:50173")


def test_malformed_poison_messages_are_consumed(tenant: Tenant) -> None:
    """Garbage in mail-sync-poison is completed without a retry, and real jobs still count."""
    # GIVEN a connected user, and garbage of every kind ahead of its poisoned job
    upn = tenant.add_user("rex")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    raw = producer(tenant)._client(MAIL_SYNC_POISON_QUEUE)
    for text in ("not json", "abcd", "[1, 2]", '{"kind": "mail"}', "\u00e9\u00e8"):
        raw.send_message(text)
    garbage = [
        {"kind": "mail", "tenant": "", "user": ""},
        {"kind": "mail", "tenant": tenant.tenant_id, "user": "nobody"},
        {"kind": "fanout", "tenant": tenant.tenant_id},
    ]

    # WHEN the host works through them
    real = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}
    poison(tenant, *garbage, real)

    # THEN nothing was retried into a second poison queue and the real job was recorded
    again = QueueClient.from_connection_string(
        tenant.stack.env["AzureWebJobsStorage"], f"{MAIL_SYNC_POISON_QUEUE}-poison"
    )
    assert _length(again) == 0
    assert listed(tenant, upn)["state"] == "error"
    assert tenant.stack.call("GET", "health").ok


def _length(client: QueueClient) -> int:
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # a queue never created holds nothing
        return 0
