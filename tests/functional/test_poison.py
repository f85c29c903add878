"""Poisoned jobs are made visible (BR-14), through the local host.

A mail or calendar job marks its connection; a fan-out page is logged and audited.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.adapters.queues import (
    CALENDAR_SYNC_POISON_QUEUE,
    FANOUT_POISON_QUEUE,
    MAIL_SYNC_POISON_QUEUE,
    MAX_DEQUEUE_COUNT,
    JobQueue,
)
from shared.sync.explain import times_in_words
from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def producer(tenant: Tenant) -> JobQueue:
    """The product's own queue producer, on the stack's storage."""
    service = QueueServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    return JobQueue(service)


def poison(tenant: Tenant, *jobs: dict[str, Any], queue: str = MAIL_SYNC_POISON_QUEUE) -> None:
    """Put jobs on a poison queue as the host does after the last attempt, sweep, and wait."""
    sender = producer(tenant)
    for job in jobs:
        sender.send(queue, job)
    sweep(tenant, queue)


def sweep(tenant: Tenant, queue: str = MAIL_SYNC_POISON_QUEUE) -> None:
    """Run the poison sweep now, rather than at its next minute, and wait for the queue."""
    tenant.stack.run_function("poison_sweep")
    tenant.stack.wait_idle(queues=(queue,))


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
    assert f"failed {times_in_words(MAX_DEQUEUE_COUNT)} in a row" in shown["explanation"]["summary"]
    mine = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert [(c["state"], c["lastError"]) for c in mine] == [("error", "job_poisoned")]


def test_connection_in_error_still_lists_and_chooses_folders(tenant: Tenant) -> None:
    """A user whose connection is in error may still list folders and change the choice."""
    # GIVEN a connected user whose mail job was poisoned
    upn = tenant.add_user("pim")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    job = {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[upn]}
    poison(tenant, job)

    # WHEN the user lists their folders and chooses Sent Items only
    folders = tenant.stack.call("GET", "me/mailfolders", tenant.token(upn))
    sent = tenant.stack.sim.folder_id(upn, "Sent Items")
    chosen = tenant.stack.call(
        "PUT", "me/connections/mail/folders", tenant.token(upn), json={"folderIds": [sent]}
    )

    # THEN both work, and the connection syncs Sent Items only
    assert folders.status_code == 200
    assert chosen.status_code == 200, chosen.text
    mine = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert [f["id"] for f in mine[0]["folders"]] == [sent]


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


def test_poisoned_calendar_job_marks_only_the_calendar_connection(tenant: Tenant) -> None:
    """A calendar job in calendar-sync-poison marks the calendar connection, not the mail one."""
    # GIVEN a user with both connections, and garbage ahead of the poisoned calendar job
    upn = tenant.add_user("sol")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.stack.connect_calendar(tenant.token(upn)).raise_for_status()
    raw = producer(tenant)._client(CALENDAR_SYNC_POISON_QUEUE)
    for text in ("not json", '{"kind": "calendar"}'):
        raw.send_message(text)
    job = {"kind": "calendar", "tenant": tenant.tenant_id, "user": tenant.users[upn]}

    # WHEN the host works through them
    garbage = [{**job, "kind": "mail"}, {**job, "user": ""}]
    poison(tenant, *garbage, job, queue=CALENDAR_SYNC_POISON_QUEUE)

    # THEN the calendar connection shows the error and the mail connection is untouched
    mine = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    shown = {c["kind"]: (c["state"], c["lastError"]) for c in mine}
    assert shown == {"calendar": ("error", "job_poisoned"), "mail": ("active", None)}
    again = QueueClient.from_connection_string(
        tenant.stack.env["AzureWebJobsStorage"], f"{CALENDAR_SYNC_POISON_QUEUE}-poison"
    )
    assert _length(again) == 0


def test_poisoned_fanout_page_is_logged_and_audited(tenant: Tenant) -> None:
    """A fan-out page in sync-fanout-poison leaves a warning and an audit entry an admin sees."""
    # GIVEN a tenant with two connected users, and garbage ahead of its poisoned fan-out page
    for alias in ("tia", "ugo"):
        tenant.stack.connect_mail(tenant.token(tenant.add_user(alias))).raise_for_status()
    producer(tenant)._client(FANOUT_POISON_QUEUE).send_message("not json")
    slot = "2025-06-01T12:10:00+00:00"
    since = (tenant.stack.workdir / "host.log").stat().st_size

    # WHEN the page lands in sync-fanout-poison, sent by the real producer
    job = {"kind": "fanout", "tenant": tenant.tenant_id, "slot": slot}
    poison(tenant, {"kind": "mail", "tenant": tenant.tenant_id}, job, queue=FANOUT_POISON_QUEUE)

    # THEN the admin's audit log holds one system entry naming the slot and the counts
    listed = tenant.stack.call(
        "GET", "admin/audit", tenant.admin, params={"action": "sync.fanoutPoisoned"}
    )
    assert listed.status_code == 200, listed.text
    entries = [
        {k: e[k] for k in ("actorId", "outcome", "targetId", "reason", "counts")}
        for e in listed.json()["items"]
    ]
    counts = {"attempts": MAX_DEQUEUE_COUNT, "due": 2}
    assert entries == [
        {
            "actorId": "system",
            "outcome": "failed",
            "targetId": slot,
            "reason": "job_poisoned",
            "counts": counts,
        }
    ]
    # AND the host log has the warning with the tenant, the slot and the counts
    with (tenant.stack.workdir / "host.log").open("rb") as log:
        log.seek(since)
        lines = log.read().decode("utf-8", "replace").splitlines()
    warned = [line for line in lines if "sync fan-out page poisoned" in line]
    assert len(warned) == 1
    assert " WARNING " in warned[0]
    assert f"tenant={tenant.tenant_id}" in warned[0]
    assert f"slot={slot} message_id=" in warned[0]
    assert f"attempts={MAX_DEQUEUE_COUNT} due=2" in warned[0]
    dropped = [line for line in lines if "poisoned message names nothing to record" in line]
    assert sum(f"queue={FANOUT_POISON_QUEUE}" in line for line in dropped) == 2


def test_plain_json_and_malformed_jobs_are_recorded_and_never_poisoned_again(
    tenant: Tenant,
) -> None:
    """A plain JSON job (BR-14) or one with a bad field marks its connection; none goes further."""
    # GIVEN two connected users, and in mail-sync-poison one plain JSON job (as the host copies a
    # job it could not decode) and one base64 job with a malformed field, plus text naming nobody
    upns = [tenant.add_user("pat"), tenant.add_user("quin")]
    for upn in upns:
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    plain, bad = (
        {"kind": "mail", "tenant": tenant.tenant_id, "user": tenant.users[u]} for u in upns
    )
    cs = tenant.stack.env["AzureWebJobsStorage"]
    raw = QueueClient.from_connection_string(cs, MAIL_SYNC_POISON_QUEUE)
    raw.send_message(json.dumps(plain))
    raw.send_message("hello")
    producer(tenant).send(MAIL_SYNC_POISON_QUEUE, {**bad, "done": "inbox"})

    # WHEN the poison queue is swept
    sweep(tenant)

    # THEN both connections show the poisoned job, and nothing reached a second poison queue
    for upn in upns:
        shown = listed(tenant, upn)
        assert (shown["state"], shown["lastError"]) == ("error", "job_poisoned")
    again = QueueClient.from_connection_string(cs, f"{MAIL_SYNC_POISON_QUEUE}-poison")
    assert _length(again) == 0
    assert _length(raw) == 0
