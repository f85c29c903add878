"""Unit tests for shared.sync.poisoned with hand-written queue and connection fakes."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field

import pytest

from shared.adapters.queues import (
    CALENDAR_SYNC_POISON_QUEUE,
    FANOUT_POISON_QUEUE,
    MAIL_SYNC_POISON_QUEUE,
    OUTBOX_POISON_QUEUE,
    PURGE_POISON_QUEUE,
    RawMessage,
)
from shared.errors import InvalidJobError, TransientError
from shared.sync.connections import CALENDAR, MAIL
from shared.sync.poisoned import (
    BATCH,
    PoisonedJobs,
    connection_handler,
    fanout_handler,
    outbox_handler,
    purge_handler,
    read_job,
)

TENANT, USER = "tenant-1", "user-1"
JOB = {"kind": "mail", "tenant": TENANT, "user": USER}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass
class RawQueue:
    """JobQueue stand-in for raw receives: messages per queue, deleted ones remembered."""

    waiting: dict[str, list[RawMessage]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def put(self, queue: str, *texts: str) -> None:
        held = self.waiting.setdefault(queue, [])
        held.extend(RawMessage(f"m{len(held) + i}", "pop", text) for i, text in enumerate(texts))

    def receive_raw(self, queue: str, *, max_messages: int, hold_s: int) -> list[RawMessage]:
        held = self.waiting.get(queue, [])
        taken, self.waiting[queue] = held[:max_messages], held[max_messages:]
        return taken

    def delete(self, queue: str, message: RawMessage) -> None:
        self.deleted.append(message.message_id)


@dataclass
class Connections:
    """ConnectionStore stand-in: records what was marked poisoned, or fails to."""

    marked: list[tuple[str, str, str]] = field(default_factory=list)
    error: Exception | None = None

    def record_poisoned(self, tenant_id: str, user_id: str, kind: str = MAIL) -> bool:
        if self.error is not None:
            raise self.error
        self.marked.append((tenant_id, user_id, kind))
        return True


def _sweeper(queue: RawQueue, connections: Connections | None = None) -> PoisonedJobs:
    connections = connections or Connections()
    handlers = {
        MAIL_SYNC_POISON_QUEUE: connection_handler(connections, MAIL),  # type: ignore[arg-type]
        CALENDAR_SYNC_POISON_QUEUE: connection_handler(connections, CALENDAR),  # type: ignore[arg-type]
    }
    return PoisonedJobs(handlers, queue)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(_b64(json.dumps(JOB)), id="base64-as-agreed"),
        pytest.param(json.dumps(JOB), id="plain-json-BR-14"),
        pytest.param(_b64(json.dumps({**JOB, "done": "inbox"})), id="bad-done-field"),
        pytest.param(_b64(json.dumps({**JOB, "kind": "calendar"})), id="wrong-kind"),
    ],
)
def test_sweep_records_a_job_naming_its_connection_whatever_else_is_wrong(text):
    """Base64 or plain JSON, with a malformed field or not, the named connection is marked."""
    # GIVEN the message in mail-sync-poison
    queue, connections = RawQueue(), Connections()
    queue.put(MAIL_SYNC_POISON_QUEUE, text)

    # WHEN the poison queues are swept
    counts = _sweeper(queue, connections).sweep()

    # THEN the mail connection is marked, and the message is gone
    assert connections.marked == [(TENANT, USER, MAIL)]
    assert queue.deleted == ["m0"]
    assert counts == {"recorded": 1, "unreadable": 0, "left": 0}


def test_sweep_marks_the_calendar_connection_for_the_calendar_queue():
    """A job in calendar-sync-poison marks the calendar connection."""
    # GIVEN a calendar job in its poison queue
    queue, connections = RawQueue(), Connections()
    queue.put(CALENDAR_SYNC_POISON_QUEUE, _b64(json.dumps({**JOB, "kind": "calendar"})))

    # WHEN swept THEN the calendar connection is the one marked
    _sweeper(queue, connections).sweep()
    assert connections.marked == [(TENANT, USER, CALENDAR)]


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        _b64("hello"),
        _b64(json.dumps([JOB])),
        _b64(json.dumps({**JOB, "user": USER + "\u0000"})),
        json.dumps({**JOB, "tenant": "jane@vendor.example"}),
        _b64("\u00e9"),
        "",
    ],
)
def test_sweep_drops_a_message_naming_no_valid_connection_with_a_warning(text, caplog):
    """A message without a valid tenant and user is logged by queue and id, then deleted."""
    # GIVEN such a message
    queue, connections = RawQueue(), Connections()
    queue.put(MAIL_SYNC_POISON_QUEUE, text)

    # WHEN swept
    with caplog.at_level(logging.WARNING, logger="shared.sync.poisoned"):
        counts = _sweeper(queue, connections).sweep()

    # THEN nothing is marked, it is deleted, and the warning names the queue and id only
    assert connections.marked == []
    assert queue.deleted == ["m0"]
    assert counts["unreadable"] == 1
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (record.queue, record.message_id) == (MAIL_SYNC_POISON_QUEUE, "m0")  # type: ignore[attr-defined]
    assert "jane" not in caplog.text
    assert "hello" not in caplog.text


def test_sweep_leaves_a_message_it_cannot_record_and_goes_on():
    """A storage failure leaves that message for a later sweep; the sweep itself never fails."""
    # GIVEN two jobs, and a connection store that cannot be written
    queue = RawQueue()
    queue.put(MAIL_SYNC_POISON_QUEUE, _b64(json.dumps(JOB)), json.dumps(JOB))
    connections = Connections(error=TransientError("table unreachable"))

    # WHEN swept
    counts = _sweeper(queue, connections).sweep()

    # THEN neither was deleted, so both are read again once their hold ends
    assert queue.deleted == []
    assert counts == {"recorded": 0, "unreadable": 0, "left": 2}


def test_sweep_takes_more_than_one_batch():
    """A queue holding more than one batch is emptied in one sweep."""
    # GIVEN more jobs than one receive returns
    queue, connections = RawQueue(), Connections()
    queue.put(MAIL_SYNC_POISON_QUEUE, *[json.dumps(JOB)] * (BATCH + 3))

    # WHEN swept THEN every one was recorded and deleted
    assert _sweeper(queue, connections).sweep()["recorded"] == BATCH + 3
    assert len(queue.deleted) == BATCH + 3


def test_read_job_reads_both_encodings_and_refuses_the_rest():
    """The agreed base64 and plain JSON give the job; anything else gives None."""
    assert read_job(_b64(json.dumps(JOB))) == JOB
    assert read_job(json.dumps(JOB)) == JOB
    assert read_job("abcd") is None
    assert read_job(_b64("[1]")) is None


@dataclass
class Services:
    """The fan-out planner, purge jobs and outbox worker, each recording what it was given."""

    seen: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def record_poisoned(self, job: dict[str, object], *, message_id: str) -> dict[str, int]:
        if job.get("kind") != "fanout":
            raise InvalidJobError("not a fan-out job")
        self.seen.append(("fanout", job))
        return {"attempts": 5}

    def fail(self, job: dict[str, object]) -> None:
        if job.get("kind") not in ("purge", "outbox"):
            raise InvalidJobError("not an outbox job")
        self.seen.append((str(job["kind"]), job))


def test_sweep_gives_fanout_purge_and_outbox_jobs_to_their_services():
    """Each poison queue's jobs go to the service that records them; foreign ones are dropped."""
    # GIVEN one readable job in each of three poison queues (one as plain JSON), and junk
    queue, services = RawQueue(), Services()
    fanout = {"kind": "fanout", "tenant": TENANT, "slot": "2025-06-01T12:10:00+00:00"}
    purge = {"kind": "purge", "tenant": TENANT, "job": "0" * 32}
    outbox = {"kind": "outbox", "tenant": TENANT, "id": "item-1"}
    queue.put(FANOUT_POISON_QUEUE, json.dumps(fanout), _b64(json.dumps(JOB)))
    queue.put(PURGE_POISON_QUEUE, _b64(json.dumps(purge)), _b64(json.dumps({"kind": "purge"})))
    queue.put(OUTBOX_POISON_QUEUE, _b64(json.dumps(outbox)), "hello")
    handlers = {
        FANOUT_POISON_QUEUE: fanout_handler(services),  # type: ignore[arg-type]
        PURGE_POISON_QUEUE: purge_handler(services),  # type: ignore[arg-type]
        OUTBOX_POISON_QUEUE: outbox_handler(services),  # type: ignore[arg-type]
    }

    # WHEN swept
    counts = PoisonedJobs(handlers, queue).sweep()  # type: ignore[arg-type]

    # THEN each service recorded its own job, the rest was dropped, and all were deleted
    assert services.seen == [("fanout", fanout), ("purge", purge), ("outbox", outbox)]
    assert counts == {"recorded": 3, "unreadable": 3, "left": 0}
    assert len(queue.deleted) == 6
