"""The two-stage fan-out against Azurite: real tables, real queues, real conditional writes."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.adapters.queues import (
    FANOUT_QUEUE,
    MAIL_SYNC_QUEUE,
    MAX_DEQUEUE_COUNT,
    JobQueue,
    decode_job,
)
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.errors import TransientError
from shared.sync.connections import ACTIVE, ERROR, MAIL, REAUTH_REQUIRED, TABLE
from shared.sync.connectionstore import ConnectionStore
from shared.sync.planner import SyncPlanner
from shared.sync.slotclaims import SLOT_PREFIX

if TYPE_CHECKING:
    from devstack.azurite import Azurite

NOW = datetime(2025, 6, 1, 12, 17, 3, tzinfo=UTC)
SLOT = "2025-06-01T12:10:00+00:00"


@pytest.fixture(scope="module")
def tables(azurite: Azurite) -> TableEntityStore:
    store = TableEntityStore(TableServiceClient.from_connection_string(azurite.connection_string))
    store.ensure_tables()
    return store


@pytest.fixture
def queue(azurite: Azurite) -> Iterator[JobQueue]:
    """The job queue on Azurite, with the fan-out and mail queues empty at start and end."""
    jobs = JobQueue(QueueServiceClient.from_connection_string(azurite.connection_string))
    jobs.ensure_queues()
    for name in (FANOUT_QUEUE, MAIL_SYNC_QUEUE):
        jobs._client(name).clear_messages()
    yield jobs
    for name in (FANOUT_QUEUE, MAIL_SYNC_QUEUE):
        jobs._client(name).clear_messages()


@pytest.fixture
def store(tables: TableEntityStore) -> ConnectionStore:
    # The fan-out never opens token caches, so no cipher or MSAL client is needed.
    return ConnectionStore(tables, cast(Any, None), cast(Any, None))


def seed(
    tables: TableEntityStore,
    store: ConnectionStore,
    states: Sequence[str],
    *,
    tenant: str | None = None,
    users: Sequence[str] | None = None,
) -> str:
    """Store connections of a tenant in the given states, as consent does; return its id.

    The tenant is a new one unless named; its users are ``user-000`` on unless named.
    """
    tenant = tenant or str(uuid.uuid4())
    names = users or [f"user-{i:03d}" for i in range(len(states))]
    rows = [
        {
            "PartitionKey": table_key(tenant),
            "RowKey": table_key(user, MAIL),
            "tenantId": tenant,
            "userId": user,
            "kind": MAIL,
            "state": state,
            "upn": f"{i}@t.example",
            "scopes": "[]",
            "tokenCache": "sealed",
        }
        for i, (user, state) in enumerate(zip(names, states, strict=True))
    ]
    tables.upsert_batch(TABLE, rows)
    store.index_tenant(tenant)
    return tenant


def receive_all(queue: JobQueue, name: str) -> list[dict[str, Any]]:
    """Take every message off a queue and return the decoded jobs."""
    client = queue._client(name)
    jobs = []
    while True:
        batch = list(client.receive_messages(messages_per_page=32, max_messages=32))
        if not batch:
            return jobs
        for message in batch:
            jobs.append(decode_job(message.content))
            client.delete_message(message)


def run_stage_two(plan: SyncPlanner, queue: JobQueue) -> None:
    """Run every fan-out message, continuations included, as the queue trigger would."""
    while jobs := receive_all(queue, FANOUT_QUEUE):
        for job in jobs:
            plan.fan_out_page(job)


def mail_jobs(queue: JobQueue, tenants: set[str]) -> Counter[tuple[str, str, str]]:
    jobs = receive_all(queue, MAIL_SYNC_QUEUE)
    return Counter((j["tenant"], j["user"], j["slot"]) for j in jobs if j["tenant"] in tenants)


def planner(store: ConnectionStore, queue: JobQueue, page_size: int = 1000) -> SyncPlanner:
    return SyncPlanner(store, queue, page_size=page_size, clock=lambda: NOW)


def test_fan_out_enqueues_one_job_per_due_connection_across_pages(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """Stage 1 and 2 send one mail job per active or error connection, paging a big tenant."""
    # GIVEN a tenant of 25 mixed connections and a small one, with a page size of 10
    big = seed(tables, store, [ACTIVE] * 20 + [ERROR] * 2 + [REAUTH_REQUIRED] * 2 + ["revoked"])
    small = seed(tables, store, [ACTIVE])
    plan = planner(store, queue, page_size=10)

    # WHEN the timer runs and every fan-out message is processed
    plan.fan_out()
    run_stage_two(plan, queue)

    # THEN each due connection has exactly one job for the slot
    jobs = mail_jobs(queue, {big, small})
    assert sum(1 for t, _, _ in jobs if t == big) == 22
    assert sum(1 for t, _, _ in jobs if t == small) == 1
    assert set(jobs.values()) == {1}
    assert {slot for _, _, slot in jobs} == {SLOT}


def test_fan_out_twice_for_one_slot_enqueues_once(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """A timer that fires twice for a slot still leaves one job per connection (BR-15)."""
    # GIVEN a tenant with 30 active connections, fanned out once for the slot
    tenant = seed(tables, store, [ACTIVE] * 30)
    plan = planner(store, queue, page_size=7)
    plan.fan_out()
    run_stage_two(plan, queue)
    first = mail_jobs(queue, {tenant})

    # WHEN the timer fires again for the same slot
    plan.fan_out()
    run_stage_two(plan, queue)

    # THEN nothing more is enqueued
    assert sum(first.values()) == 30
    assert mail_jobs(queue, {tenant}) == Counter()


def test_fan_out_from_two_threads_at_once_enqueues_once(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """Two fan-outs for one slot racing on the same connections enqueue one job each (BR-15)."""
    # GIVEN a tenant with 60 active connections and its fan-out job
    tenant = seed(tables, store, [ACTIVE] * 60)
    job = {"kind": "fanout", "tenant": tenant, "slot": SLOT}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def race() -> None:
        try:
            start.wait()
            planner(store, queue).fan_out_page(job)
        except BaseException as error:
            errors.append(error)

    # WHEN two workers run it at the same moment
    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN every connection has exactly one job
    assert errors == []
    jobs = mail_jobs(queue, {tenant})
    assert len(jobs) == 60
    assert set(jobs.values()) == {1}


def test_fan_out_for_the_next_slot_enqueues_again(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """The next slot claims again; an older slot that comes late finds nothing to do."""
    # GIVEN a tenant fanned out for the 12:10 slot
    tenant = seed(tables, store, [ACTIVE] * 3)
    planner(store, queue).fan_out()
    run_stage_two(planner(store, queue), queue)
    mail_jobs(queue, {tenant})

    # WHEN the 12:20 slot runs, then a late 12:10 message
    later = SyncPlanner(store, queue, clock=lambda: NOW + timedelta(minutes=10))
    later.fan_out()
    run_stage_two(later, queue)
    second = mail_jobs(queue, {tenant})
    late = planner(store, queue).fan_out_page({"kind": "fanout", "tenant": tenant, "slot": SLOT})

    # THEN 12:20 enqueued one job each and the late 12:10 message none
    assert {slot for _, _, slot in second} == {"2025-06-01T12:20:00+00:00"}
    assert sum(second.values()) == 3
    assert (late.due, late.sent) == (3, 0)


class FlakyQueue(JobQueue):
    """A JobQueue whose first mail send fails for the given positions."""

    def __init__(self, inner: JobQueue, fail: set[int]) -> None:
        super().__init__(inner._service)
        self._fail = fail

    def send_each(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        if queue != MAIL_SYNC_QUEUE or not self._fail:
            return super().send_each(queue, jobs)
        keep = [job for i, job in enumerate(jobs) if i not in self._fail]
        super().send_each(queue, keep)
        failed, self._fail = sorted(self._fail), set()
        return failed


def test_fan_out_gives_back_claims_of_unsent_jobs(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """Jobs that could not be sent are claimed again when the queue retries the message."""
    # GIVEN a tenant of 5 and a queue that loses two mail jobs once
    tenant = seed(tables, store, [ACTIVE] * 5)
    job = {"kind": "fanout", "tenant": tenant, "slot": SLOT}
    plan = planner(store, FlakyQueue(queue, {1, 3}))

    # WHEN stage 2 fails and is retried
    with pytest.raises(TransientError):
        plan.fan_out_page(job)
    retried = plan.fan_out_page(job)

    # THEN the retry sent just the two, and every connection has one job
    assert (retried.sent, retried.skipped) == (2, 3)
    jobs = mail_jobs(queue, {tenant})
    assert len(jobs) == 5
    assert set(jobs.values()) == {1}


class StaleStore(ConnectionStore):
    """A ConnectionStore that reads no claims, as if another fan-out wrote them just after."""

    def _slot_rows(self, connections: Sequence[Any]) -> dict[str, dict[str, Any]]:
        return {}


def test_claims_written_after_the_read_fail_the_batch_and_are_skipped(
    tables: TableEntityStore, store: ConnectionStore
) -> None:
    """A batch meeting a claim it did not read writes nothing; one by one, only that is skipped."""
    # GIVEN a tenant of 40 whose first 15 connections another fan-out claimed for the slot
    tenant = seed(tables, store, [ACTIVE] * 40)
    connections, _ = store.page_for_tenant(tenant, size=1000, token=None)
    slot = datetime.fromisoformat(SLOT)
    assert len(store.claim_slots(connections[:15], slot)) == 15

    # WHEN a fan-out that did not see those claims claims all 40
    stale = StaleStore(tables, cast(Any, None), cast(Any, None))
    won = stale.claim_slots(connections, slot)

    # THEN it wins exactly the other 25, and a third claim wins nothing
    assert sorted(claim.connection.user_id for claim in won) == sorted(
        connection.user_id for connection in connections[15:]
    )
    assert store.claim_slots(connections, slot) == []


class LossyTables(TableEntityStore):
    """A TableEntityStore whose batch writes happen but whose answers are lost."""

    def write_batch(
        self, table: str, writes: Sequence[tuple[Mapping[str, Any], str | None]]
    ) -> list[str]:
        super().write_batch(table, writes)
        raise TransientError("the answer was lost")


def test_claims_whose_answer_was_lost_are_adopted_once(
    azurite: Azurite, tables: TableEntityStore, store: ConnectionStore
) -> None:
    """A claim transaction that happened but answered nothing still counts as this call's."""
    # GIVEN a tenant of 30 and a store whose claim transactions lose their answers
    tenant = seed(tables, store, [ACTIVE] * 30)
    connections, _ = store.page_for_tenant(tenant, size=1000, token=None)
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    lossy = ConnectionStore(LossyTables(service), cast(Any, None), cast(Any, None))
    slot = datetime.fromisoformat(SLOT)

    # WHEN it claims the slot, and a second fan-out tries after it
    won = lossy.claim_slots(connections, slot)
    again = store.claim_slots(connections, slot)

    # THEN the first won every connection and the second none
    assert len(won) == 30
    assert again == []


def test_fan_out_from_a_fast_clock_holds_back_no_later_round(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """A slot a day ahead is refused by stage 2, and a claim written for it does not stick."""
    # GIVEN a tenant of 3 connections, a fan-out message for a slot a day ahead, and a claim
    # for that slot written by a fast worker that did not check
    tenant = seed(tables, store, [ACTIVE] * 3)
    ahead = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    fast = {"kind": "fanout", "tenant": tenant, "slot": ahead.isoformat()}
    real = SyncPlanner(store, queue, page_size=1000)
    [first, *_] = store.page_for_tenant(tenant, size=10, token=None)[0]
    store.claim_slots([first], ahead)

    # WHEN a worker on a correct clock runs that message, then the correct slot's fan-out
    refused = real.fan_out_page(fast)
    real.fan_out()
    run_stage_two(real, queue)

    # THEN the ahead slot sent nothing, and the correct round sent one job per connection
    assert (refused.due, refused.sent) == (0, 0)
    jobs = mail_jobs(queue, {tenant})
    assert sum(jobs.values()) == 3
    assert all(slot != ahead.isoformat() for _, _, slot in jobs)


def test_fan_out_pages_across_tenants_that_share_user_ids_enqueue_once(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """Pages crossing tenants with the same user ids claim each connection apart (BR-15)."""
    # GIVEN 12 tenants of 3 to 8 connections, every tenant's users named alike, pages of 10
    tenants = {seed(tables, store, [ACTIVE] * (3 + i % 6)) for i in range(12)}
    plan = planner(store, queue, page_size=10)

    # WHEN the timer runs twice for the slot, every page each time
    plan.fan_out()
    run_stage_two(plan, queue)
    first = mail_jobs(queue, tenants)
    plan.fan_out()
    run_stage_two(plan, queue)

    # THEN each connection of each tenant had one job, and the second run sent none
    assert sum(first.values()) == sum(3 + i % 6 for i in range(12))
    assert set(first.values()) == {1}
    assert mail_jobs(queue, tenants) == Counter()


def test_fan_out_page_reads_only_what_the_job_needs(
    tables: TableEntityStore, store: ConnectionStore
) -> None:
    """The fan-out's page carries ids, kind and state, never the sealed token cache."""
    # GIVEN a tenant of two active connections and one waiting for consent
    tenant = seed(tables, store, [ACTIVE, ACTIVE, REAUTH_REQUIRED])

    # WHEN its due page is read
    found, following = store.due_page(tenant, tenant, size=10, token=None)

    # THEN the two due connections came, in key order, and no row read carried a token
    assert following is None
    assert [(c.user_id, c.state) for c in found] == [("user-000", ACTIVE), ("user-001", ACTIVE)]
    rows, _ = tables.page(
        TABLE,
        "PartitionKey eq @pk",
        {"pk": table_key(tenant)},
        size=10,
        token=None,
        select=("PartitionKey", "RowKey", "state"),
    )
    assert all("tokenCache" not in row for row in rows)


def test_fan_out_span_reaching_the_index_partitions_sends_only_connection_jobs(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """A span whose key range covers the tenant index and the claims sends jobs for connections.

    Its last tenant's id is no Entra id (no worker would take its jobs), so that tenant's
    connections are skipped too, while the first tenant's all get their jobs.
    """
    # GIVEN a tenant whose id sorts after every "~" partition, claims already in the table,
    # and a span from a tenant that sorts before them
    low = seed(tables, store, [ACTIVE] * 2, tenant=f"0-{uuid.uuid4()}")
    high = seed(tables, store, [ACTIVE] * 3, tenant=f"\u00f6-{uuid.uuid4()}")
    planner(store, queue).fan_out_page({"kind": "fanout", "tenant": low, "slot": SLOT})
    mail_jobs(queue, {low})
    later = "2025-06-01T12:20:00+00:00"
    span = {"kind": "fanout", "tenant": low, "lastTenant": high, "slot": later}

    # WHEN stage 2 runs that span for the next slot, every page of it
    plan = SyncPlanner(store, queue, clock=lambda: NOW + timedelta(minutes=10))
    plan.fan_out_page(span)
    run_stage_two(plan, queue)

    # THEN the first tenant's connections had one job each, and no job names anything else
    jobs = receive_all(queue, MAIL_SYNC_QUEUE)
    ours = Counter((j["tenant"], j["user"]) for j in jobs if j["tenant"] in {low, high})
    assert sorted(ours) == [(low, f"user-{i:03d}") for i in range(2)]
    assert set(ours.values()) == {1}
    assert all(j["kind"] == MAIL and j["slot"] == later for j in jobs)
    assert all(not str(j["tenant"]).startswith("~") for j in jobs)


@pytest.mark.parametrize("inside", ["2025-06-01T12:15:00+00:00", "2025-06-01T12:10:00.000001Z"])
def test_fan_out_for_a_time_inside_a_claimed_slot_sends_nothing(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue, inside: str
) -> None:
    """A message naming a later time of the same slot is that slot: no second job (BR-15)."""
    # GIVEN a tenant of 3 fanned out for the 12:10 slot
    tenant = seed(tables, store, [ACTIVE] * 3)
    plan = planner(store, queue)
    plan.fan_out_page({"kind": "fanout", "tenant": tenant, "slot": SLOT})
    first = mail_jobs(queue, {tenant})

    # WHEN a message names a time inside that slot
    again = plan.fan_out_page({"kind": "fanout", "tenant": tenant, "slot": inside})

    # THEN nothing more was sent, and the first jobs named the slot's start
    assert (again.due, again.sent) == (3, 0)
    assert mail_jobs(queue, {tenant}) == Counter()
    assert {slot for _, _, slot in first} == {SLOT}


def test_claims_of_users_beyond_the_basic_plane_are_read_back(
    tables: TableEntityStore, store: ConnectionStore
) -> None:
    """Claims are read in the service's UTF-16 key order, so every claim written is found."""
    # GIVEN a tenant whose users are a full-width letter and an emoji, both claimed
    tenant = seed(tables, store, [ACTIVE] * 2, users=["\uff21", "\U0001f600"])
    connections, _ = store.page_for_tenant(tenant, size=10, token=None)
    assert len(store.claim_slots(connections, datetime.fromisoformat(SLOT))) == 2

    # WHEN the page's claims are read
    known = store._slot_rows(connections)

    # THEN both are found
    assert sorted(known) == sorted(connection.key for connection in connections)


class OnceFailingReads(TableEntityStore):
    """A TableEntityStore whose first point read of a slot claim fails, as a storage blip."""

    def __init__(self, service: TableServiceClient) -> None:
        super().__init__(service)
        self.failed = False

    def get(self, table: str, partition: str, row: str) -> dict[str, Any] | None:
        if partition.startswith(SLOT_PREFIX) and not self.failed:
            self.failed = True
            raise TransientError("reading the claim failed")
        return super().get(table, partition, row)


def test_a_claim_failing_part_way_gives_back_what_it_won_so_the_retry_sends_all(
    azurite: Azurite, tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """A storage failure in one shard's claims releases every other claim of that attempt."""
    # GIVEN a tenant of 300, one of them claimed by another fan-out after this one read the
    # claims, and a store whose first re-read of a claim fails (that shard's transaction meets
    # the other claim, so its connections are claimed one by one, and the re-read fails)
    tenant = seed(tables, store, [ACTIVE] * 300)
    connections, _ = store.page_for_tenant(tenant, size=1000, token=None)
    assert len(store.claim_slots(connections[:1], datetime.fromisoformat(SLOT))) == 1
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    flaky = StaleStore(OnceFailingReads(service), cast(Any, None), cast(Any, None))
    job = {"kind": "fanout", "tenant": tenant, "slot": SLOT}

    # WHEN stage 2 fails on that read, and the queue delivers the page again
    with pytest.raises(TransientError):
        planner(flaky, queue).fan_out_page(job)
    retried = planner(flaky, queue).fan_out_page(job)

    # THEN the retry sent the other 299, each once
    jobs = mail_jobs(queue, {tenant})
    assert retried.sent == 299
    assert len(jobs) == 299
    assert set(jobs.values()) == {1}


class RefusingQueue(JobQueue):
    """A JobQueue whose mail sends all fail, as if that queue refused every message."""

    def __init__(self, inner: JobQueue) -> None:
        super().__init__(inner._service)

    def send_each(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[int]:
        if queue == MAIL_SYNC_QUEUE:
            return list(range(len(jobs)))
        return super().send_each(queue, jobs)


def test_a_page_failing_every_delivery_passes_the_next_page_on_once(
    tables: TableEntityStore, store: ConnectionStore, queue: JobQueue
) -> None:
    """Five failed deliveries and the poison handler leave one copy of the next page, not five."""
    # GIVEN a tenant of 8 in pages of 2, and a mail queue that refuses every job
    tenant = seed(tables, store, [ACTIVE] * 8)
    plan = planner(store, RefusingQueue(queue), page_size=2)
    first = {"kind": "fanout", "tenant": tenant, "slot": SLOT}

    # WHEN the first page fails on each delivery, then lands in the poison queue
    for _ in range(MAX_DEQUEUE_COUNT):
        with pytest.raises(TransientError):
            plan.fan_out_page(first)
    plan.record_poisoned(first, message_id="m-1")

    # THEN one message waits on sync-fanout: the second page
    waiting = receive_all(queue, FANOUT_QUEUE)
    assert len(waiting) == 1
    assert waiting[0]["tenant"] == tenant
    assert waiting[0]["page"]
