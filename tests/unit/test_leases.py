"""Unit tests for shared.sync.leases with the in-memory table fake and a hand-moved clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ConflictError, TransientError
from shared.sync.leases import (
    JITTER_S,
    LEASE_S,
    LEASES,
    MAIL_SLOTS,
    SLOT_RETRY_S,
    WAIT_S,
    WAITER,
    LeaseTable,
    MailboxGate,
    mailbox_partition,
)
from tests.unit.fakes import FakeQueue, FakeTables

TENANT, USER = "tenant-1", "user-1"
PARTITION = mailbox_partition(TENANT, USER)
SLOTS = ("slot-0", "slot-1", "slot-2", "slot-3")
JOB = {"kind": "mail", "tenant": TENANT, "user": USER}


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _rows(tables: FakeTables) -> dict[str, str]:
    return {row["RowKey"]: row["owner"] for row in tables.rows(LEASES)}


def _gate(tables: FakeTables, queue: FakeQueue, clock: Clock, **options: float) -> MailboxGate:
    return MailboxGate(tables, queue, clock=clock, **options)  # type: ignore[arg-type]


def test_take_gives_each_owner_a_different_slot_until_none_is_left():
    """Four owners get the four slots; a fifth gets none."""
    # GIVEN an empty leases table
    table = LeaseTable(FakeTables(), clock=Clock())

    # WHEN five owners ask for a slot
    taken = [table.take(PARTITION, SLOTS, f"owner-{n}") for n in range(5)]

    # THEN the first four hold distinct slots and the fifth waits
    assert [lease.row for lease in taken[:4] if lease] == list(SLOTS)
    assert taken[4] is None


def test_release_frees_the_slot_for_the_next_owner():
    """A released slot can be taken at once by another owner."""
    # GIVEN all slots held
    table = LeaseTable(FakeTables(), clock=Clock())
    held = [table.take(PARTITION, SLOTS, f"owner-{n}") for n in range(4)]

    # WHEN one is released
    assert held[2] is not None
    table.release(held[2])

    # THEN a new owner gets exactly that slot
    lease = table.take(PARTITION, SLOTS, "late")
    assert lease is not None
    assert lease.row == "slot-2"


def test_lost_race_on_a_row_moves_to_the_next_row():
    """A conditional write that loses its race tries the next row instead of failing."""
    # GIVEN a table where the first write to slot-0 loses to another worker
    tables = FakeTables()
    lost: list[str] = []

    def lose_once(operation: str, table: str, entity: object) -> None:
        if table == LEASES and operation == "create" and not lost:
            lost.append(operation)
            raise ConflictError(table)

    tables.fail = lose_once

    # WHEN an owner takes a slot
    lease = LeaseTable(tables, clock=Clock()).take(PARTITION, SLOTS, "me")

    # THEN it holds slot-1
    assert lease is not None
    assert lease.row == "slot-1"


def test_lease_of_a_dead_owner_lapses_and_cannot_be_renewed_or_released_by_it():
    """A crashed owner's slot is free after LEASE_S; the old owner can neither renew nor free it."""
    # GIVEN one slot, held by an owner that then stops renewing
    clock = Clock()
    tables = FakeTables()
    table = LeaseTable(tables, clock=clock)
    dead = table.take(PARTITION, SLOTS[:1], "dead")
    assert dead is not None
    assert table.take(PARTITION, SLOTS[:1], "new") is None

    # WHEN the lease time passes and another owner asks
    clock.advance(LEASE_S + 0.001)
    new = table.take(PARTITION, SLOTS[:1], "new")

    # THEN the new owner holds it, and the dead owner's renew and release leave it alone
    assert new is not None
    assert table.renew(dead) is False
    table.release(dead)
    assert _rows(tables) == {"slot-0": "new"}


def test_renew_pushes_the_expiry_forward():
    """A renewed lease is still held after the original lease time."""
    # GIVEN a held lease, renewed just before it would lapse
    clock = Clock()
    table = LeaseTable(FakeTables(), clock=clock)
    lease = table.take(PARTITION, SLOTS[:1], "me")
    assert lease is not None
    clock.advance(LEASE_S - 1)
    assert table.renew(lease) is True

    # WHEN the original lease time has passed
    clock.advance(2)

    # THEN nobody else can take it
    assert table.take(PARTITION, SLOTS[:1], "other") is None


def test_gate_admits_a_job_and_leaves_no_lease_behind():
    """An admitted job holds its connection and one slot, and gives both back when done."""
    # GIVEN an idle mailbox
    tables, queue = FakeTables(), FakeQueue()
    gate = _gate(tables, queue, Clock())

    # WHEN a job runs through the gate
    with gate.admit(TENANT, USER, "mail", "mail-sync", JOB) as admitted:
        inside = _rows(tables)

    # THEN it held the connection and one slot, and nothing is left or queued
    assert admitted is True
    assert sorted(inside) == ["conn-mail", next(r for r in inside if r.startswith("slot-"))]
    assert len(inside) == 2
    assert _rows(tables) == {}
    assert queue.sent == []


def test_gate_releases_leases_when_the_job_fails():
    """A job that raises still gives its leases back."""
    # GIVEN an idle mailbox
    tables = FakeTables()
    gate = _gate(tables, FakeQueue(), Clock())

    # WHEN the job raises inside the gate
    with (
        pytest.raises(TransientError),
        gate.admit(TENANT, USER, "mail", "mail-sync", JOB),
    ):
        raise TransientError("graph")

    # THEN nothing is held
    assert _rows(tables) == {}


def test_gate_second_job_waits_and_later_ones_are_dropped():
    """While a connection is busy, the first newcomer waits on the queue and the rest end."""
    # GIVEN a job holding the connection
    tables, queue = FakeTables(), FakeQueue()
    gate = _gate(tables, queue, Clock())
    with gate.admit(TENANT, USER, "mail", "mail-sync", JOB) as first:
        # WHEN three more jobs for the same connection arrive
        outcomes = []
        for _ in range(3):
            with gate.admit(TENANT, USER, "mail", "mail-sync", JOB) as admitted:
                outcomes.append(admitted)

    # THEN only the first holder ran; one job was re-queued as the waiter, with a short delay
    assert first is True
    assert outcomes == [False, False, False]
    assert len(queue.sent) == 1
    sent = queue.sent[0]
    assert sent.queue == "mail-sync"
    assert WAIT_S <= sent.delay_s <= WAIT_S + JITTER_S
    assert isinstance(sent.job[WAITER], str)
    assert {k: v for k, v in sent.job.items() if k != WAITER} == JOB


def test_gate_waiter_keeps_waiting_then_runs_and_clears_its_mark():
    """The waiter re-queues itself while the connection is busy, then runs once it is free."""
    # GIVEN a busy connection and a waiting job
    tables, queue = FakeTables(), FakeQueue()
    gate = _gate(tables, queue, Clock())
    holder = gate.admit(TENANT, USER, "mail", "mail-sync", JOB)
    assert holder.__enter__() is True
    with gate.admit(TENANT, USER, "mail", "mail-sync", JOB):
        pass
    waiter_job = queue.sent[-1].job

    # WHEN the waiter comes back while still busy, then again after the holder ended
    with gate.admit(TENANT, USER, "mail", "mail-sync", waiter_job) as early:
        pass
    holder.__exit__(None, None, None)
    with gate.admit(TENANT, USER, "mail", "mail-sync", queue.sent[-1].job) as later:
        rows_while_running = _rows(tables)

    # THEN it waited again under the same token, then ran with its wait mark gone
    assert early is False
    assert len(queue.sent) == 2
    assert queue.sent[1].job[WAITER] == waiter_job[WAITER]
    assert later is True
    assert "wait-mail" not in rows_while_running
    assert _rows(tables) == {}


def test_gate_job_finding_every_slot_busy_requeues_and_frees_the_connection():
    """With four slots held by other jobs, a mail job re-queues itself without holding anything."""
    # GIVEN four other jobs (calendar, sending) each holding a slot
    tables, queue, clock = FakeTables(), FakeQueue(), Clock()
    others = LeaseTable(tables, clock=clock)
    for n in range(4):
        assert others.take(PARTITION, SLOTS, f"other-{n}") is not None

    # WHEN a mail job arrives
    with _gate(tables, queue, clock).admit(TENANT, USER, "mail", "mail-sync", JOB) as admitted:
        pass

    # THEN it did not run, holds nothing, and comes back after a short delay
    assert admitted is False
    assert "conn-mail" not in _rows(tables)
    assert len(queue.sent) == 1
    assert SLOT_RETRY_S <= queue.sent[0].delay_s <= SLOT_RETRY_S + JITTER_S
    assert queue.sent[0].job == JOB


def test_gate_admits_after_a_crashed_holder_lease_lapses():
    """A connection held by a worker that died is free again once its lease runs out."""
    # GIVEN a holder that never released (its worker died)
    tables, queue, clock = FakeTables(), FakeQueue(), Clock()
    gate = _gate(tables, queue, clock)
    crashed = gate.admit(TENANT, USER, "mail", "mail-sync", JOB)
    assert crashed.__enter__() is True

    # WHEN the lease time passes and the job is delivered again
    clock.advance(LEASE_S + 1)
    with gate.admit(TENANT, USER, "mail", "mail-sync", JOB) as admitted:
        pass

    # THEN it runs
    assert admitted is True


def test_gate_keeps_renewing_while_a_long_job_runs():
    """A job running longer than its lease keeps it, because the keeper renews it."""
    # GIVEN a gate with a short lease on the real clock
    tables = FakeTables()
    gate = MailboxGate(tables, FakeQueue(), lease_s=0.3)  # type: ignore[arg-type]
    outsider = LeaseTable(tables, lease_s=0.3)

    # WHEN a job runs for three lease times
    with gate.admit(TENANT, USER, "mail", "mail-sync", JOB):
        time.sleep(0.9)
        stolen = outsider.take(PARTITION, ("conn-mail",), "outsider")

    # THEN nobody could take its connection
    assert stolen is None


def test_gate_mail_job_takes_three_of_four_free_slots_and_leaves_one():
    """A mail job asking for three slots of an idle mailbox holds three, one stays free."""
    # GIVEN an idle mailbox
    tables, queue, clock = FakeTables(), FakeQueue(), Clock()
    gate = _gate(tables, queue, clock)

    # WHEN a mail job asks for MAIL_SLOTS slots
    with gate.admit_slots(TENANT, USER, "mail", "mail-sync", JOB, slots=MAIL_SLOTS) as held:
        inside = _rows(tables)
        other = LeaseTable(tables, clock=clock).take(PARTITION, SLOTS, "calendar-job")

    # THEN it holds three slots under one owner, a calendar job still gets the fourth,
    # and everything is given back afterwards
    assert held == MAIL_SLOTS == 3
    slots = [row for row in inside if row.startswith("slot-")]
    assert len(slots) == 3
    assert len({inside[row] for row in slots}) == 1
    assert other is not None
    assert other.row not in slots
    assert "conn-mail" not in _rows(tables)
    assert queue.sent == []


@pytest.mark.parametrize(("taken", "expected"), [(1, 3), (2, 2), (3, 1)])
def test_gate_mail_job_takes_as_many_slots_as_are_free(taken, expected):
    """With some slots held by other jobs, a mail job runs with the ones left, at least one."""
    # GIVEN other jobs holding some of the four slots
    tables, queue, clock = FakeTables(), FakeQueue(), Clock()
    others = LeaseTable(tables, clock=clock)
    for n in range(taken):
        assert others.take(PARTITION, SLOTS, f"other-{n}") is not None

    # WHEN a mail job asks for three
    gate = _gate(tables, queue, clock)
    with gate.admit_slots(TENANT, USER, "mail", "mail-sync", JOB, slots=MAIL_SLOTS) as held:
        inside = _rows(tables)

    # THEN it holds what was free, up to three, and never a slot of another job
    assert held == expected
    mine = [
        row for row, owner in inside.items() if row.startswith("slot-") and owner[:5] != "other"
    ]
    assert len(mine) == expected
    assert queue.sent == []


def test_take_many_reads_the_partition_once_and_skips_held_rows():
    """take_many takes up to the count asked, skipping rows another owner holds."""
    # GIVEN slot-1 held by someone else
    tables, clock = FakeTables(), Clock()
    table = LeaseTable(tables, clock=clock)
    assert table.take(PARTITION, ("slot-1",), "other") is not None

    # WHEN an owner asks for three of the four
    taken = table.take_many(PARTITION, SLOTS, "me", 3)

    # THEN it got slot-0, slot-2 and slot-3
    assert [lease.row for lease in taken] == ["slot-0", "slot-2", "slot-3"]
