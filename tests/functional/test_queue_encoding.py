"""BR-14: every job the product sends survives the real producer, Azurite and the host's decoding.

Ids are chosen to be valid base64 on their own (hex of a length divisible by four), the case in
which a producer sending plain text is silently decoded into other bytes by the trigger.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.queue import QueueClient, QueueServiceClient

from devstack.host.hostconfig import HostConfig
from devstack.host.queues import decode_body
from devstack.stack import ROOT
from shared.adapters.queues import (
    CALENDAR_SYNC_QUEUE,
    FANOUT_QUEUE,
    MAIL_SYNC_POISON_QUEUE,
    MAIL_SYNC_QUEUE,
    NOTIFICATIONS_QUEUE,
    OUTBOX_QUEUE,
    PURGE_QUEUE,
    QUEUES,
    JobQueue,
    decode_job,
    encode_job,
)
from shared.power.purge import parse_message, purge_message
from shared.sending.outbox import outbox_job, parse_job
from shared.sync.calendarjob import CalendarJob
from shared.sync.connections import CALENDAR, MAIL, Connection
from shared.sync.fanoutjob import FanoutJob, sync_job
from shared.sync.leases import WAITER
from shared.sync.mail import MailJob
from shared.sync.schedule import parse_slot, slot_of
from shared.sync.slotclaims import SlotClaim

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from devstack.stack import LocalStack

pytestmark = pytest.mark.stack

HOST_ENCODING = HostConfig.from_file(ROOT / "host.json").queues.message_encoding


def b64_id() -> str:
    """A fresh id that is also valid base64 (eight hex digits)."""
    token = uuid.uuid4().hex[:8]
    base64.b64decode(token, validate=True)
    return token


def claim(kind: str, tenant: str, user: str) -> SlotClaim:
    """A won slot claim, as the fan-out makes one before sending the connection's job."""
    connection = Connection(tenant, user, kind, "active", "", (), "", ())
    return SlotClaim(connection, "2026-01-05T10:00:00+00:00", "etag", None)


def every_job(tenant: str, user: str) -> dict[str, Mapping[str, Any]]:
    """Each kind of message the product puts on a queue, built by the code that sends it."""
    slot = parse_slot(slot_of(datetime.now(UTC)))
    mail, calendar = MailJob(tenant, user), CalendarJob(tenant, user)
    return {
        "fanout": FanoutJob(tenant, slot).as_message(),
        "fanout-page": FanoutJob(tenant, slot, page="eyJQSyI6ICJhYmNkIn0=").as_message(),
        "fanout-span": FanoutJob(tenant, slot, last_tenant_id=f"{tenant}-last").as_message(),
        "mail-from-fanout": sync_job(claim(MAIL, tenant, user)),
        "calendar-from-fanout": sync_job(claim(CALENDAR, tenant, user)),
        "mail-requeued": mail.as_message(),
        "calendar-requeued": calendar.as_message(),
        "mail-waiter": {**mail.as_message(), WAITER: uuid.uuid4().hex},
        "purge": purge_message(tenant, uuid.uuid4().hex),
        "outbox": outbox_job(tenant, uuid.uuid4().hex),
    }


PARSERS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "fanout": FanoutJob.parse,
    "fanout-page": FanoutJob.parse,
    "fanout-span": FanoutJob.parse,
    "mail-from-fanout": MailJob.parse,
    "calendar-from-fanout": CalendarJob.parse,
    "mail-requeued": MailJob.parse,
    "calendar-requeued": CalendarJob.parse,
    "mail-waiter": MailJob.parse,
    "purge": parse_message,
    "outbox": parse_job,
}


def producer(stack: LocalStack) -> JobQueue:
    """The product's own queue producer, on the stack's Azurite."""
    connection = stack.env["AzureWebJobsStorage"]
    return JobQueue(QueueServiceClient.from_connection_string(connection))


def test_every_job_type_round_trips_byte_for_byte(stack: LocalStack) -> None:
    """Each job sent by JobQueue reads back, through the host's decode rule, as the same bytes."""
    # GIVEN every job type with base64-looking ids, and a queue no function listens to
    tenant, user = b64_id(), b64_id()
    jobs = every_job(tenant, user)
    queue = f"roundtrip-{uuid.uuid4().hex[:12]}"
    sender = producer(stack)
    sender.ensure_queues([queue])

    # WHEN the producer sends them, one alone and the rest concurrently, and the wire text is
    # received raw and decoded with the host's rule and host.json's encoding
    names = list(jobs)
    sender.send(queue, jobs[names[0]])
    assert sender.send_each(queue, [jobs[name] for name in names[1:]]) == []
    raw = QueueClient.from_connection_string(stack.env["AzureWebJobsStorage"], queue)
    wire = [m.content for m in raw.receive_messages(messages_per_page=32)]
    received = [decode_body(text, HOST_ENCODING) for text in wire]

    # THEN the host gets the producer's exact JSON bytes for each, and each kind's own parser
    # reads back the job it was built from
    assert HOST_ENCODING == "base64"
    expected = {encode_job(job).encode("utf-8"): name for name, job in jobs.items()}
    assert sorted(received) == sorted(expected)
    for body in received:
        name = expected[body]
        assert decode_job(body) == jobs[name]
        assert PARSERS[name](decode_job(body)) == PARSERS[name](jobs[name])
    raw.delete_queue()


def test_producer_covers_every_queue_the_product_declares() -> None:
    """The round trip's job types reach every queue the product sends to."""
    # GIVEN the queues sync jobs go to, by job type
    destinations = {
        "fanout": FANOUT_QUEUE,
        "fanout-page": FANOUT_QUEUE,
        "fanout-span": FANOUT_QUEUE,
        "mail-from-fanout": MAIL_SYNC_QUEUE,
        "calendar-from-fanout": CALENDAR_SYNC_QUEUE,
        "mail-requeued": MAIL_SYNC_QUEUE,
        "calendar-requeued": CALENDAR_SYNC_QUEUE,
        "mail-waiter": MAIL_SYNC_QUEUE,
        "purge": PURGE_QUEUE,
        "outbox": OUTBOX_QUEUE,
    }

    # WHEN they are compared with the declared queues that are not poison queues
    # The notifications queue carries notices for the platform, no job (see test_reauth.py).
    produced_to = {q for q in QUEUES if not q.endswith("-poison")} - {NOTIFICATIONS_QUEUE}

    # THEN each declared queue gets at least one job type, and every job type is covered
    assert set(destinations.values()) == produced_to
    assert set(destinations) == set(PARSERS)


def test_jobs_with_base64_ids_reach_the_hosts_workers_intact(stack: LocalStack) -> None:
    """Through the running host, each worker logs the very ids sent, and nothing is poisoned."""
    # GIVEN jobs for a tenant and user that do not exist, with base64-looking ids
    tenant, user = b64_id(), b64_id()
    jobs = every_job(tenant, user)
    log = stack.workdir / "host.log"
    start = log.stat().st_size
    poison_before = {q: _peek_count(stack, f"{q}-poison") for q in PRODUCED}

    # WHEN the product's producer sends each to its real queue, and a mail job to the poison
    # queue as the host moves one there
    sender = producer(stack)
    sender.ensure_queues([MAIL_SYNC_POISON_QUEUE])
    sender.send(FANOUT_QUEUE, jobs["fanout"])
    sender.send(MAIL_SYNC_QUEUE, jobs["mail-from-fanout"])
    sender.send(MAIL_SYNC_QUEUE, jobs["mail-waiter"])
    sender.send(CALENDAR_SYNC_QUEUE, jobs["calendar-from-fanout"])
    sender.send(PURGE_QUEUE, jobs["purge"])
    sender.send(OUTBOX_QUEUE, jobs["outbox"])
    sender.send(MAIL_SYNC_POISON_QUEUE, jobs["mail-requeued"])
    stack.run_function("poison_sweep")
    # Earlier tests may leave automatic emails waiting on the outbox queue for hours, so that
    # queue is never empty; its worker's log line is awaited instead.
    drained = tuple(q for q in PRODUCED if q != OUTBOX_QUEUE)
    stack.wait_idle(queues=(*drained, MAIL_SYNC_POISON_QUEUE))
    outbox_id = f"outbox_id={jobs['outbox']['id']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _count(_lines_since(log, start), "outbox job skipped", outbox_id):
            break

    # THEN the fan-out, mail, calendar, purge and poison workers each read the same ids
    lines = _lines_since(log, start)
    ids = f"tenant={tenant}"
    assert _count(lines, "sync fan-out page done", ids) == 1
    assert _count(lines, "sync job skipped", ids, "kind=mail", f"user={user}") == 2
    assert _count(lines, "sync job skipped", ids, "kind=calendar", f"user={user}") == 1
    assert _count(lines, "poisoned sync job recorded", ids, f"user={user}") == 1
    assert _count(lines, "purge job skipped", ids, f"job={jobs['purge']['job']}") == 1
    assert _count(lines, "outbox job skipped", ids, outbox_id) == 1
    assert not [line for line in lines if "outcome=failed" in line]
    assert {q: _peek_count(stack, f"{q}-poison") for q in PRODUCED} == poison_before


PRODUCED = (FANOUT_QUEUE, MAIL_SYNC_QUEUE, CALENDAR_SYNC_QUEUE, PURGE_QUEUE, OUTBOX_QUEUE)


def _peek_count(stack: LocalStack, queue: str) -> int:
    client = QueueClient.from_connection_string(stack.env["AzureWebJobsStorage"], queue)
    try:
        return len(list(client.peek_messages(max_messages=32)))
    except Exception:  # a poison queue not created yet holds nothing
        return 0


def _lines_since(log: Path, start: int) -> list[str]:
    # The poison worker logs after its invocation is counted done; give it a moment.
    time.sleep(0.5)
    with log.open("rb") as handle:
        handle.seek(start)
        return handle.read().decode("utf-8", "replace").splitlines()


def _count(lines: list[str], phrase: str, *parts: str) -> int:
    return sum(1 for line in lines if phrase in line and all(p in line for p in parts))


def test_wire_text_is_base64_not_the_json_itself(stack: LocalStack) -> None:
    """The producer never puts plain JSON on the wire, which the host would misread (BR-14)."""
    # GIVEN a mail job whose whole JSON happens not to be base64, and a fresh queue
    queue = f"roundtrip-{uuid.uuid4().hex[:12]}"
    sender = producer(stack)
    sender.ensure_queues([queue])
    job = MailJob(b64_id(), b64_id()).as_message()

    # WHEN it is sent and received raw
    sender.send(queue, job)
    raw = QueueClient.from_connection_string(stack.env["AzureWebJobsStorage"], queue)
    [message] = list(raw.receive_messages())

    # THEN the wire text is the base64 of the JSON, not the JSON
    assert message.content != encode_job(job)
    assert base64.b64decode(message.content, validate=True) == encode_job(job).encode()
    assert json.loads(decode_body(message.content, HOST_ENCODING)) == job
    raw.delete_queue()


def test_a_poison_queue_not_created_yet_reads_as_empty(stack: LocalStack) -> None:
    """The poison sweep may run before the host has moved anything to a poison queue."""
    queue = producer(stack)

    assert queue.receive_raw("never-poisoned-poison", max_messages=8, hold_s=30) == []
