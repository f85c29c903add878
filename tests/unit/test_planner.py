"""Unit tests for shared.sync.planner: the two-stage fan-out, with hand-written fakes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from shared.adapters.queues import (
    CALENDAR_SYNC_QUEUE,
    FANOUT_QUEUE,
    MAIL_SYNC_QUEUE,
    MAX_DEQUEUE_COUNT,
    JobQueue,
)
from shared.adapters.tables import TableEntityStore
from shared.audit.log import AuditLog
from shared.errors import InvalidJobError, TransientError, ValidationError
from shared.sync.connections import ACTIVE, CALENDAR, ERROR, MAIL, REAUTH_REQUIRED, Connection
from shared.sync.connectionstore import ConnectionStore
from shared.sync.fanoutjob import FanoutJob
from shared.sync.planner import SPAN_TENANTS, SyncPlanner
from shared.sync.schedule import slot_text
from shared.sync.slotclaims import SlotClaim
from tests.unit.fakes import FakeTables

NOW = datetime(2025, 6, 1, 12, 17, 3, tzinfo=UTC)
SLOT = "2025-06-01T12:10:00+00:00"


def connection(tenant: str, user: str, state: str = ACTIVE) -> Connection:
    return Connection(tenant, user, MAIL, state, f"{user}@x.example", (), "home", ("Mail.Read",))


@dataclass
class FakeConnections:
    """ConnectionStore stand-in: connections per tenant, one claimed slot per connection."""

    tenants: dict[str, list[Connection]] = field(default_factory=dict)
    claimed: dict[tuple[str, str, str], str] = field(default_factory=dict)
    released: list[SlotClaim] = field(default_factory=list)
    passed: set[tuple[datetime, str]] = field(default_factory=set)

    def list_indexed_tenants(
        self, first: str | None = None, last: str | None = None
    ) -> Iterator[str]:
        yield from (self._span(first, last) if first and last else self.tenants)

    def _span(self, first: str, last: str) -> list[str]:
        names = list(self.tenants)
        if first not in names:
            return []
        return names[names.index(first) : names.index(last) + 1 if last in names else None]

    def due_page(
        self, first: str, last: str, *, size: int, token: str | None
    ) -> tuple[list[Connection], str | None]:
        if token is not None and not token.isdigit():
            raise ValidationError("continuationToken", "must be a token from a previous page")
        start = int(token or 0)
        rows = [c for tenant in self._span(first, last) for c in self.tenants[tenant]]
        page = [c for c in rows[start : start + size] if c.state in (ACTIVE, ERROR)]
        following = str(start + size) if start + size < len(rows) else None
        return page, following

    def pass_on_once(self, slot: datetime, page_id: str) -> bool:
        if (slot, page_id) in self.passed:
            return False
        self.passed.add((slot, page_id))
        return True

    def forget_passed(self, slot: datetime, page_id: str) -> None:
        self.passed.discard((slot, page_id))

    def sweep_passed(self, before: datetime) -> int:
        old = {entry for entry in self.passed if entry[0] < before}
        self.passed -= old
        return len(old)

    def claim_slots(self, connections: Sequence[Connection], slot: datetime) -> list[SlotClaim]:
        won = []
        for c in connections:
            key, text = (c.tenant_id, c.user_id, c.kind), slot_text(slot)
            if self.claimed.get(key, "") >= text:
                continue
            self.claimed[key] = text
            won.append(SlotClaim(c, text, "etag", None))
        return won

    def release_slots(self, claims: Sequence[SlotClaim]) -> int:
        for claim in claims:
            connection = claim.connection
            del self.claimed[(connection.tenant_id, connection.user_id, connection.kind)]
            self.released.append(claim)
        return len(claims)


@dataclass
class FakeQueue:
    """JobQueue stand-in recording jobs per queue; ``refuse`` names users whose jobs fail once."""

    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)

    def send(self, queue: str, job: Mapping[str, Any], *, delay_s: int = 0) -> None:
        self.sent.setdefault(queue, []).append(dict(job))

    def send_many(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> int:
        for job in jobs:
            self.send(queue, job)
        return len(jobs)

    def send_each(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        failed = []
        for position, job in enumerate(jobs):
            if job.get("user") in self.refuse:
                self.refuse.discard(str(job["user"]))
                failed.append(position)
            else:
                self.send(queue, job)
        return failed


def planner(store: FakeConnections, queue: FakeQueue, page_size: int = 1000) -> SyncPlanner:
    return SyncPlanner(
        cast(ConnectionStore, store),
        cast(JobQueue, queue),
        page_size=page_size,
        clock=lambda: NOW,
    )


def drain(plan: SyncPlanner, queue: FakeQueue) -> None:
    """Run stage 2 for every fan-out job until none is left, as the queue trigger would."""
    while queue.sent.get(FANOUT_QUEUE):
        plan.fan_out_page(queue.sent[FANOUT_QUEUE].pop(0))


def test_fan_out_sends_one_job_per_span_of_tenants_for_the_current_slot() -> None:
    """Stage 1 reads no connection: one fan-out job per span of indexed tenants, slot floored."""
    # GIVEN one tenant more than two spans hold
    names = [f"t{i:03d}" for i in range(2 * SPAN_TENANTS + 1)]
    store = FakeConnections({name: [connection(name, "a")] for name in names})
    queue = FakeQueue()

    # WHEN stage 1 runs at 12:17:03
    sent = planner(store, queue).fan_out()

    # THEN there are three jobs for the 12:10 slot, the last span one tenant alone
    assert sent == 3
    assert queue.sent[FANOUT_QUEUE] == [
        {"kind": "fanout", "tenant": names[0], "lastTenant": names[SPAN_TENANTS - 1], "slot": SLOT},
        {
            "kind": "fanout",
            "tenant": names[SPAN_TENANTS],
            "lastTenant": names[2 * SPAN_TENANTS - 1],
            "slot": SLOT,
        },
        {"kind": "fanout", "tenant": names[-1], "slot": SLOT},
    ]
    assert MAIL_SYNC_QUEUE not in queue.sent


def test_fan_out_page_crosses_tenants_of_its_span() -> None:
    """One page holds the connections of several tenants; each gets its own jobs, once."""
    # GIVEN three tenants of 2, 3 and 1 connections, in one span, and pages of 4
    store = FakeConnections(
        {
            "t1": [connection("t1", u) for u in ("a", "b")],
            "t2": [connection("t2", u) for u in ("a", "b", "c")],
            "t3": [connection("t3", "a")],
        }
    )
    queue = FakeQueue()
    plan = planner(store, queue, page_size=4)

    # WHEN stage 1 and the first page run
    plan.fan_out()
    first = plan.fan_out_page(queue.sent[FANOUT_QUEUE].pop(0))

    # THEN the page crossed from t1 into t2, and its successor keeps the span
    assert (first.due, first.sent, first.more) == (4, 4, True)
    assert [(j["tenant"], j["user"]) for j in queue.sent[MAIL_SYNC_QUEUE]] == [
        ("t1", "a"),
        ("t1", "b"),
        ("t2", "a"),
        ("t2", "b"),
    ]
    assert queue.sent[FANOUT_QUEUE] == [
        {"kind": "fanout", "tenant": "t1", "lastTenant": "t3", "slot": SLOT, "page": "4"}
    ]

    # WHEN the rest runs
    drain(plan, queue)

    # THEN every connection of every tenant has one job
    jobs = sorted((j["tenant"], j["user"]) for j in queue.sent[MAIL_SYNC_QUEUE])
    assert jobs == sorted((t, c.user_id) for t, rows in store.tenants.items() for c in rows)


def test_fan_out_page_sends_mail_jobs_for_due_connections_only() -> None:
    """Active and error connections get a mail job with the slot; others get none."""
    # GIVEN connections in every state
    states = {"a": ACTIVE, "b": ERROR, "c": REAUTH_REQUIRED, "d": "revoked"}
    store = FakeConnections({"t1": [connection("t1", u, s) for u, s in states.items()]})
    queue = FakeQueue()
    plan = planner(store, queue)

    # WHEN both stages run
    plan.fan_out()
    drain(plan, queue)

    # THEN jobs went to a and b, in the mail job's shape plus the slot
    assert queue.sent[MAIL_SYNC_QUEUE] == [
        {"kind": "mail", "tenant": "t1", "user": u, "slot": SLOT} for u in ("a", "b")
    ]


def test_fan_out_page_pages_a_large_tenant_with_continuations() -> None:
    """A tenant larger than a page is split: each page sends its successor first."""
    # GIVEN a tenant with 7 connections and a page size of 3
    store = FakeConnections({"t1": [connection("t1", f"u{i}") for i in range(7)]})
    queue = FakeQueue()
    plan = planner(store, queue, page_size=3)

    # WHEN stage 1 and the first stage 2 page run
    plan.fan_out()
    first = plan.fan_out_page(queue.sent[FANOUT_QUEUE].pop(0))

    # THEN the first page sent 3 jobs and queued the next page with its token
    assert (first.due, first.sent, first.more) == (3, 3, True)
    assert queue.sent[FANOUT_QUEUE] == [
        {"kind": "fanout", "tenant": "t1", "slot": SLOT, "page": "3"}
    ]

    # WHEN the remaining pages run
    drain(plan, queue)

    # THEN every connection has exactly one job
    users = [job["user"] for job in queue.sent[MAIL_SYNC_QUEUE]]
    assert sorted(users) == [f"u{i}" for i in range(7)]


def test_fan_out_twice_in_one_slot_sends_each_job_once() -> None:
    """A second timer run for the same slot enqueues nothing more (BR-15)."""
    # GIVEN a tenant with two connections, fanned out once
    store = FakeConnections({"t1": [connection("t1", "a"), connection("t1", "b")]})
    queue = FakeQueue()
    plan = planner(store, queue)
    plan.fan_out()
    drain(plan, queue)

    # WHEN the timer fires again for the same slot
    plan.fan_out()
    drain(plan, queue)

    # THEN still one job per connection
    assert [job["user"] for job in queue.sent[MAIL_SYNC_QUEUE]] == ["a", "b"]


def test_fan_out_page_releases_claims_of_unsent_jobs_and_raises() -> None:
    """A mail job that could not be sent gives its claim back; the retry sends only it."""
    # GIVEN a send that fails once for user b
    store = FakeConnections({"t1": [connection("t1", u) for u in ("a", "b", "c")]})
    queue = FakeQueue(refuse={"b"})
    plan = planner(store, queue)
    plan.fan_out()
    job = queue.sent[FANOUT_QUEUE].pop(0)

    # WHEN stage 2 runs, fails, and the queue delivers the message again
    with pytest.raises(TransientError, match="1 of 3 sync jobs were not sent"):
        plan.fan_out_page(job)
    retried = plan.fan_out_page(job)

    # THEN b's claim was released, and the retry sent only b
    assert [claim.connection.user_id for claim in store.released] == ["b"]
    assert (retried.due, retried.sent, retried.skipped) == (3, 1, 2)
    assert sorted(j["user"] for j in queue.sent[MAIL_SYNC_QUEUE]) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"kind": "mail", "tenant": "t", "slot": SLOT}, "kind"),
        ({"kind": "fanout", "slot": SLOT}, "tenant"),
        ({"kind": "fanout", "tenant": "", "slot": SLOT}, "tenant"),
        ({"kind": "fanout", "tenant": "t"}, "slot"),
        ({"kind": "fanout", "tenant": "t", "slot": "soon"}, "slot"),
        ({"kind": "fanout", "tenant": "t", "slot": SLOT, "page": 3}, "page"),
        ({"kind": "fanout", "tenant": "t", "lastTenant": "", "slot": SLOT}, "lastTenant"),
        ({"kind": "fanout", "tenant": "t", "lastTenant": ["u"], "slot": SLOT}, "lastTenant"),
        ({"kind": "fanout", "tenant": "t2", "lastTenant": "t1", "slot": SLOT}, "lastTenant"),
        ({"kind": "fanout", "tenant": "t", "slot": "0001-01-01T00:00:00+01:00"}, "slot"),
    ],
)
def test_fanout_job_parse_names_the_bad_field(job: dict[str, Any], field: str) -> None:
    """A malformed fan-out message is refused with the field that is wrong."""
    # GIVEN / WHEN
    with pytest.raises(InvalidJobError) as raised:
        FanoutJob.parse(job)

    # THEN
    assert str(raised.value).startswith(f"{field}: ")


def test_fan_out_page_refuses_a_forged_page_token() -> None:
    """A page token the store did not issue is an invalid job naming the page field."""
    # GIVEN a fan-out job with a token the store cannot read
    plan = planner(FakeConnections({"t1": []}), FakeQueue())

    # WHEN / THEN
    with pytest.raises(InvalidJobError, match=r"^page: "):
        plan.fan_out_page({"kind": "fanout", "tenant": "t1", "slot": SLOT, "page": "x"})


@pytest.mark.parametrize("last", [None, "t9"])
def test_fanout_job_round_trips_through_its_message(last: str | None) -> None:
    """A job's message parses back to the same job, with or without a span."""
    # GIVEN
    job = FanoutJob("t1", datetime(2025, 6, 1, 12, 10, tzinfo=UTC), "tok", last)

    # WHEN / THEN
    assert FanoutJob.parse(job.as_message()) == job


def test_fanout_job_of_one_tenant_reads_as_the_span_of_that_tenant() -> None:
    """A message of the earlier per-tenant shape, or naming its tenant twice, spans one tenant."""
    # GIVEN / WHEN
    plain = FanoutJob.parse({"kind": "fanout", "tenant": "t1", "slot": SLOT})
    doubled = FanoutJob.parse({"kind": "fanout", "tenant": "t1", "lastTenant": "t1", "slot": SLOT})

    # THEN
    assert plain.span == doubled.span == ("t1", "t1")
    assert "lastTenant" not in doubled.as_message()


def audited_planner(store: FakeConnections) -> tuple[SyncPlanner, AuditLog]:
    """A planner whose audit log writes to in-memory tables."""
    audit = AuditLog(cast(TableEntityStore, FakeTables()), clock=lambda: NOW)
    plan = SyncPlanner(
        cast(ConnectionStore, store), cast(JobQueue, FakeQueue()), clock=lambda: NOW, audit=audit
    )
    return plan, audit


def test_record_poisoned_warns_and_audits_the_page_with_its_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A poisoned fan-out page leaves a warning with ids and counts and a system audit entry."""
    # GIVEN a tenant with two due connections and one waiting for consent
    rows = [connection("t1", "a"), connection("t1", "b"), connection("t1", "c", REAUTH_REQUIRED)]
    plan, audit = audited_planner(FakeConnections({"t1": rows}))

    # WHEN its fan-out message comes out of the poison queue
    with caplog.at_level(logging.WARNING, logger="shared.sync.planner"):
        counts = plan.record_poisoned(
            {"kind": "fanout", "tenant": "t1", "slot": SLOT}, message_id="m-1"
        )

    # THEN the log line and the tenant's audit log say which slot, how many connections and tries
    assert counts == {"attempts": MAX_DEQUEUE_COUNT, "due": 2}
    [record] = caplog.records
    assert (record.levelno, record.tenant, record.slot) == (logging.WARNING, "t1", SLOT)
    assert (record.message_id, record.due, record.attempts) == ("m-1", 2, MAX_DEQUEUE_COUNT)
    entries, _ = audit.entries("t1", action="sync.fanoutPoisoned", size=10, token=None)
    assert [e.as_json() | {"id": "", "at": ""} for e in entries] == [
        {
            "id": "",
            "at": "",
            "actorId": "system",
            "action": "sync.fanoutPoisoned",
            "outcome": "failed",
            "targetUserId": None,
            "targetId": SLOT,
            "reason": "job_poisoned",
            "counts": {"attempts": MAX_DEQUEUE_COUNT, "due": 2},
        }
    ]


def test_record_poisoned_page_with_a_bad_token_is_audited_without_a_count() -> None:
    """A page whose token cannot be read (perhaps why it failed) is still recorded, uncounted."""
    # GIVEN a tenant with connections
    plan, audit = audited_planner(FakeConnections({"t1": [connection("t1", "a")]}))

    # WHEN a page with a token the store refuses is poisoned
    job = {"kind": "fanout", "tenant": "t1", "slot": SLOT, "page": "not-a-token"}
    counts = plan.record_poisoned(job, message_id="m-2")

    # THEN the entry holds the attempts only
    assert counts == {"attempts": MAX_DEQUEUE_COUNT}
    entries, _ = audit.entries("t1", size=10, token=None)
    assert [dict(e.counts) for e in entries] == [{"attempts": MAX_DEQUEUE_COUNT}]


def test_record_poisoned_refuses_a_message_that_is_not_a_fanout_job() -> None:
    """A mail job or a fan-out job without a tenant raises and records nothing."""
    # GIVEN a planner with an audit log
    plan, audit = audited_planner(FakeConnections({"t1": [connection("t1", "a")]}))

    # WHEN / THEN wrong messages are refused
    for job in ({"kind": "mail", "tenant": "t1", "user": "a"}, {"kind": "fanout", "slot": SLOT}):
        with pytest.raises(InvalidJobError):
            plan.record_poisoned(job, message_id="m-3")
    assert audit.entries("t1", size=10, token=None)[0] == []


def test_record_poisoned_span_page_audits_each_tenant_with_its_own_count() -> None:
    """A poisoned page crossing tenants leaves one entry per tenant on it, each with its count."""
    # GIVEN a span of three tenants, the third without due connections
    store = FakeConnections(
        {
            "t1": [connection("t1", "a")],
            "t2": [connection("t2", u) for u in ("a", "b")],
            "t3": [connection("t3", "a", REAUTH_REQUIRED)],
        }
    )
    plan, audit = audited_planner(store)

    # WHEN the span's first page is poisoned
    job = {"kind": "fanout", "tenant": "t1", "lastTenant": "t3", "slot": SLOT}
    counts = plan.record_poisoned(job, message_id="m-4")

    # THEN the log counts the page, and t1 and t2 each have an entry with their own due count
    assert counts == {"attempts": MAX_DEQUEUE_COUNT, "due": 3}
    for tenant, due in (("t1", 1), ("t2", 2)):
        [entry] = audit.entries(tenant, size=10, token=None)[0]
        assert dict(entry.counts) == {"attempts": MAX_DEQUEUE_COUNT, "due": due}
    assert audit.entries("t3", size=10, token=None)[0] == []


def test_record_poisoned_span_page_with_a_bad_token_audits_every_tenant_of_the_span() -> None:
    """An unreadable page of a span is recorded, uncounted, in each tenant the span names."""
    # GIVEN four tenants, the span covering the middle two
    store = FakeConnections({t: [connection(t, "a")] for t in ("t1", "t2", "t3", "t4")})
    plan, audit = audited_planner(store)

    # WHEN a page of t2..t3 with a forged token is poisoned
    job = {"kind": "fanout", "tenant": "t2", "lastTenant": "t3", "slot": SLOT, "page": "x"}
    plan.record_poisoned(job, message_id="m-5")

    # THEN t2 and t3 have an entry with the attempts only, t1 and t4 none
    for tenant, expected in (("t1", []), ("t2", [1]), ("t3", [1]), ("t4", [])):
        entries = audit.entries(tenant, size=10, token=None)[0]
        assert [len(e.counts) for e in entries] == expected


def test_fan_out_skips_an_indexed_tenant_whose_id_is_no_id_and_plans_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tenant id Entra could not issue (too long for a message) costs no other tenant its slot."""
    # GIVEN two tenants and, between them, one whose id is 9,000 characters
    odd = "\u00e9" * 9000
    store = FakeConnections({"t1": [], odd: [], "t2": []})
    queue = FakeQueue()

    # WHEN stage 1 runs
    with caplog.at_level(logging.WARNING, logger="shared.sync.planner"):
        sent = planner(store, queue).fan_out()

    # THEN one span of t1 and t2 is planned, and a warning counts the tenant left out
    assert sent == 1
    assert queue.sent[FANOUT_QUEUE] == [
        {"kind": "fanout", "tenant": "t1", "lastTenant": "t2", "slot": SLOT}
    ]
    [record] = caplog.records
    assert (record.message, record.skipped) == (
        "sync fan-out skips indexed tenants whose ids are not ids",
        1,
    )


def test_fan_out_page_skips_a_connection_whose_id_is_no_id_and_sends_the_rest() -> None:
    """A connection no worker could take gets no job, and the page's others still get theirs."""
    # GIVEN a span of two tenants, the first with a user whose id is 9,000 characters
    odd = "\u00e9" * 9000
    store = FakeConnections(
        {"t1": [connection("t1", "a"), connection("t1", odd)], "t2": [connection("t2", "b")]}
    )
    queue = FakeQueue()
    plan = planner(store, queue)

    # WHEN the span's page runs
    result = plan.fan_out_page({"kind": "fanout", "tenant": "t1", "lastTenant": "t2", "slot": SLOT})

    # THEN a and b have their jobs and the odd one has neither a job nor a claim
    assert (result.due, result.sent) == (2, 2)
    assert [j["user"] for j in queue.sent[MAIL_SYNC_QUEUE]] == ["a", "b"]
    assert ("t1", odd, MAIL) not in store.claimed


class BrokenQueue(FakeQueue):
    """A FakeQueue whose sends to one queue raise before anything is sent."""

    def send_each(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        if queue == CALENDAR_SYNC_QUEUE:
            raise InvalidJobError("job of kind 'calendar' exceeds the message size")
        return super().send_each(queue, jobs)


def test_fan_out_page_gives_back_the_claims_of_jobs_a_raising_send_left_unsent() -> None:
    """A send that raises releases the claims of every job not sent, then the page fails."""
    # GIVEN a tenant with mail and calendar connections, and calendar sends that raise
    rows = [connection("t1", "a"), connection("t1", "b")]
    rows.append(Connection("t1", "a", CALENDAR, ACTIVE, "a@x.example", (), "home", ()))
    store = FakeConnections({"t1": rows})
    queue = BrokenQueue()

    # WHEN the page runs
    with pytest.raises(InvalidJobError):
        planner(store, queue).fan_out_page({"kind": "fanout", "tenant": "t1", "slot": SLOT})

    # THEN the mail jobs went out and kept their claims; the calendar claim was given back
    assert [j["user"] for j in queue.sent[MAIL_SYNC_QUEUE]] == ["a", "b"]
    assert [(c.connection.kind, c.connection.user_id) for c in store.released] == [(CALENDAR, "a")]


class RefusingQueue(FakeQueue):
    """A FakeQueue whose mail sends all fail, as if that queue refused every message."""

    def send_each(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        if queue == MAIL_SYNC_QUEUE:
            return list(range(len(jobs)))
        return super().send_each(queue, jobs)


def test_a_page_failing_every_delivery_passes_its_successor_on_once() -> None:
    """Retries of a failing page, and its poison handler, send its successor only once."""
    # GIVEN a tenant of 6 in pages of 2, and mail sends that always fail
    store = FakeConnections({"t1": [connection("t1", f"u{i}") for i in range(6)]})
    queue = RefusingQueue()
    plan = planner(store, queue, page_size=2)
    first = {"kind": "fanout", "tenant": "t1", "slot": SLOT}

    # WHEN the first page fails on each of its deliveries, then is recorded as poisoned
    for _ in range(MAX_DEQUEUE_COUNT):
        with pytest.raises(TransientError):
            plan.fan_out_page(first)
    plan.record_poisoned(first, message_id="m-6")

    # THEN the second page was passed on exactly once, and every claim was given back
    assert queue.sent[FANOUT_QUEUE] == [{**first, "page": "2"}]
    assert store.claimed == {}


def test_a_duplicated_page_passes_its_successor_on_once() -> None:
    """Two timer runs for one slot send two copies of a span; only one passes the next page on."""
    # GIVEN a tenant of 4 in pages of 2, fanned out twice for the slot
    store = FakeConnections({"t1": [connection("t1", f"u{i}") for i in range(4)]})
    queue = FakeQueue()
    plan = planner(store, queue, page_size=2)
    plan.fan_out()
    plan.fan_out()
    copies = queue.sent.pop(FANOUT_QUEUE)

    # WHEN both copies of the first page run
    for copy in copies:
        plan.fan_out_page(copy)

    # THEN one successor is waiting, and the first page's jobs went out once
    assert queue.sent[FANOUT_QUEUE] == [{**copies[0], "page": "2"}]
    assert [j["user"] for j in queue.sent[MAIL_SYNC_QUEUE]] == ["u0", "u1"]


def test_stage_one_sweeps_the_page_records_of_slots_an_hour_old() -> None:
    """The timer deletes what pages recorded more than an hour before its slot, and no more."""
    # GIVEN records of a slot 70 minutes old and of one 50 minutes old
    store = FakeConnections({"t1": [connection("t1", "a")]})
    slot = datetime.fromisoformat(SLOT)
    store.passed = {(slot - timedelta(minutes=70), "old"), (slot - timedelta(minutes=50), "new")}

    # WHEN stage 1 runs
    planner(store, FakeQueue()).fan_out()

    # THEN only the older one is gone
    assert store.passed == {(slot - timedelta(minutes=50), "new")}


class UnreadableConnections(FakeConnections):
    """FakeConnections whose pages cannot be read: storage is down."""

    def due_page(
        self, first: str, last: str, *, size: int, token: str | None
    ) -> tuple[list[Connection], str | None]:
        raise TransientError("querying connections failed")


def test_record_poisoned_warns_before_a_storage_failure_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A poisoned page whose read fails is still logged, then the handler raises to retry."""
    # GIVEN a store whose pages cannot be read
    plan, _ = audited_planner(UnreadableConnections({"t1": [connection("t1", "a")]}))

    # WHEN the poison handler runs
    job = {"kind": "fanout", "tenant": "t1", "slot": SLOT}
    with (
        caplog.at_level(logging.WARNING, logger="shared.sync.planner"),
        pytest.raises(TransientError),
    ):
        plan.record_poisoned(job, message_id="m-7")

    # THEN the warning names the tenant, the slot and the attempts
    [record] = caplog.records
    assert (record.message, record.tenant, record.slot) == (
        "sync fan-out page poisoned; its connections miss this slot",
        "t1",
        SLOT,
    )
    assert record.attempts == MAX_DEQUEUE_COUNT
