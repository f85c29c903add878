"""Purge jobs against Azurite: killed halfway, redelivered, re-queued, started twice."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient, TextBase64DecodePolicy

from devstack.stack import LocalStack
from shared.adapters.blobs import BlobBodyStore
from shared.adapters.queues import PURGE_QUEUE, JobQueue, decode_job
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.matching.addresses import parse_address
from shared.power import purge
from shared.power.purge import PurgeJobs
from shared.settings import Settings
from shared.sync.connections import MAIL, connection_key
from shared.sync.emailrows import EMAILS, INDEX, email_partition
from shared.sync.store import EmailStore
from shared.wiring import Services
from tests.functional.test_mail_sync import message as graph_message
from tests.functional.test_sync_resilience import connected

if TYPE_CHECKING:
    from devstack.azurite import Azurite
    from tests.functional.conftest import Tenant


class KilledError(Exception):
    """Stands for the worker's process dying."""


class DyingTables:
    """Table Storage whose process dies once a given number of deletes went through.

    Batched deletes count one per entity and die part-way, as a crash between two requests
    would leave them.
    """

    def __init__(self, tables: TableEntityStore, die_after: int) -> None:
        self._tables = tables
        self.left = die_after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tables, name)

    def delete(self, table: str, partition: str, row: str, *, etag: str | None = None) -> None:
        self._spend()
        self._tables.delete(table, partition, row, etag=etag)

    def delete_batch(self, table: str, keys: Any) -> None:
        for partition, row in keys:
            self.delete(table, partition, row)

    def _spend(self) -> None:
        if self.left == 0:
            raise KilledError
        self.left -= 1


@pytest.fixture(scope="module")
def storage(azurite: Azurite) -> tuple[TableEntityStore, BlobBodyStore, JobQueue]:
    """Tables, blobs and queues on the session's Azurite."""
    text = azurite.connection_string
    tables = TableEntityStore(TableServiceClient.from_connection_string(text))
    tables.ensure_tables()
    blobs = BlobBodyStore(BlobServiceClient.from_connection_string(text))
    blobs.ensure_container()
    queue = JobQueue(QueueServiceClient.from_connection_string(text))
    queue.ensure_queues()
    return tables, blobs, queue


def _mailbox(store: EmailStore, tenant: str, user: str, count: int, shared_with: str) -> None:
    """Store ``count`` emails for ``user``; every fifth is also held by ``shared_with``."""
    participants = [a for a in (parse_address("jane@acme.example"),) if a is not None]
    for number in range(count):
        message = {
            "id": f"item-{number}",
            "internetMessageId": f"<{tenant}-{number}@acme.example>",
            "subject": f"m{number}",
            "receivedDateTime": "2024-05-01T10:00:00Z",
            "body": {"contentType": "text", "content": "hello"},
        }
        holders = [user, shared_with] if number % 5 == 0 else [user]
        for holder in holders:
            store.save(
                tenant_id=tenant,
                user_id=holder,
                connection=connection_key(tenant, holder, MAIL),
                message=message,
                participants=participants,
                company_ids=frozenset({"acme"}),
            )


def _emails_and_holders(store: EmailStore, tables: TableEntityStore, tenant: str) -> list[int]:
    """How many holders each of the tenant's stored emails has."""
    partitions = [email_partition(tenant, f"{shard:02x}") for shard in range(256)]
    return [
        len(store.holders(tenant, str(row["RowKey"])))
        for partition in partitions
        for row in tables.list_partition(EMAILS, partition)
    ]


def _purges(tables: TableEntityStore, queue: JobQueue, store: EmailStore) -> PurgeJobs:
    return PurgeJobs(tables, queue, {MAIL: store}, connection_key=connection_key)


def _drain(azurite: Azurite | str, tenant: str) -> list[dict[str, Any]]:
    """Take this tenant's purge messages off the queue (of an Azurite or a connection string)."""
    text = azurite if isinstance(azurite, str) else azurite.connection_string
    client = QueueServiceClient.from_connection_string(text)
    queue_client = client.get_queue_client(
        PURGE_QUEUE, message_decode_policy=TextBase64DecodePolicy()
    )
    taken = []
    for message in queue_client.receive_messages(messages_per_page=32, max_messages=32):
        job = decode_job(message.content)
        if job.get("tenant") == tenant:
            taken.append(job)
            queue_client.delete_message(message)
    return taken


@pytest.mark.parametrize("die_after", [1, 7, 23, 61, 140])
def test_purge_killed_halfway_and_redelivered_finishes_without_orphans(
    storage: tuple[TableEntityStore, BlobBodyStore, JobQueue], azurite: Azurite, die_after: int
) -> None:
    """A worker dying after any delete leaves nothing the redelivery does not finish."""
    # GIVEN Ann's 40 emails, 8 of them also held by Ben, and a purge of Ann's mail
    tables, blobs, queue = storage
    tenant = str(uuid.uuid4())
    _mailbox(EmailStore(tables, blobs), tenant, "ann", 40, "ben")
    dying = EmailStore(DyingTables(tables, die_after), blobs)  # type: ignore[arg-type]
    purges = _purges(tables, queue, dying)
    job = purges.start(tenant, "ann", MAIL, "ann")
    delivered = _drain(azurite, tenant)

    # WHEN the first delivery dies part-way and the message is delivered again
    with pytest.raises(KilledError):
        purges.run(delivered[0])
    healthy = _purges(tables, queue, EmailStore(tables, blobs))
    healthy.run(delivered[0])

    # THEN the job completed and only Ben's 8 emails are left, each held by Ben alone
    store = EmailStore(tables, blobs)
    finished = healthy.get(tenant, job.job_id)
    assert finished is not None
    assert finished.state == "completed"
    assert _emails_and_holders(store, tables, tenant) == [1] * 8
    assert store.mailbox_items(connection_key(tenant, "ann", MAIL), size=10) == []
    listed, _ = store.inbox_page(tenant, size=50, token=None)
    assert len(listed) == 8
    assert len(list(tables.list_partition(INDEX, table_key(tenant, "acme")))) == 8


def test_a_large_purge_continues_in_further_deliveries(
    storage: tuple[TableEntityStore, BlobBodyStore, JobQueue],
    azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delivery that used up its batches re-queues the job, which the next one finishes."""
    # GIVEN batches of 4 items, two per delivery, and 20 emails to purge
    monkeypatch.setattr(purge, "BATCH_SIZE", 4)
    monkeypatch.setattr(purge, "BATCHES_PER_RUN", 2)
    tables, blobs, queue = storage
    tenant = str(uuid.uuid4())
    store = EmailStore(tables, blobs)
    _mailbox(store, tenant, "ann", 20, "ben")
    purges = _purges(tables, queue, store)
    job = purges.start(tenant, "ann", MAIL, "ann")

    # WHEN each delivery's message is run until none is left
    deliveries = 0
    pending = _drain(azurite, tenant)
    while pending and deliveries < 10:
        purges.run(pending[0])
        deliveries += 1
        pending = _drain(azurite, tenant)

    # THEN it took three deliveries (8, 8, then 4 items and the empty check) and finished
    finished = purges.get(tenant, job.job_id)
    assert finished is not None
    assert deliveries == 3
    assert finished.state == "completed"
    assert dict(finished.counts) == {"removed": 16, "keptShared": 4}


def test_a_purge_started_twice_runs_once(
    storage: tuple[TableEntityStore, BlobBodyStore, JobQueue], azurite: Azurite
) -> None:
    """Starting a purge while one is queued answers that job and sends no second message."""
    tables, blobs, queue = storage
    tenant = str(uuid.uuid4())
    purges = _purges(tables, queue, EmailStore(tables, blobs))
    first = purges.start(tenant, "ann", MAIL, "ann")
    second = purges.start(tenant, "ann", MAIL, "admin")
    assert second.job_id == first.job_id
    assert len(_drain(azurite, tenant)) == 1


def test_purges_started_at_the_same_moment_share_one_job(
    storage: tuple[TableEntityStore, BlobBodyStore, JobQueue], azurite: Azurite
) -> None:
    """Six starts released at once answer one job id, none fails, and one message is sent."""
    tables, blobs, queue = storage
    for _ in range(4):
        # GIVEN a user without a purge, and six callers ready to start one
        tenant = str(uuid.uuid4())
        purges = _purges(tables, queue, EmailStore(tables, blobs))
        ready = threading.Barrier(6)

        def start(
            _: int, purges: PurgeJobs = purges, tenant: str = tenant, ready: Any = ready
        ) -> str:
            ready.wait()
            return purges.start(tenant, "ann", MAIL, "ann").job_id

        # WHEN they all start at the same moment
        with ThreadPoolExecutor(max_workers=6) as pool:
            ids = list(pool.map(start, range(6)))

        # THEN every one got the same job, and the job was sent once
        assert len(set(ids)) == 1
        assert len(_drain(azurite, tenant)) == 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of this module's own whose host leaves the purge queue to the test to work."""
    disabled = {
        "AzureWebJobs.sync_fanout.Disabled": "true",
        "AzureWebJobs.purge_worker.Disabled": "true",
    }
    local = LocalStack(tmp_path_factory.mktemp("purgestack"), extra_env=disabled).start()
    yield local
    local.stop()


def _purge_status(tenant: Tenant, upn: str, location: str) -> dict[str, Any]:
    answer = tenant.stack.call("GET", location.removeprefix("/api/"), tenant.token(upn))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.mark.stack
def test_a_purge_started_again_after_some_batches_continues_the_one_job(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second start once the job has released batches answers it; the job ends counted right."""
    # GIVEN Ann's ten synced emails, two of them also Ben's, her purge started through the API,
    # and its first delivery worked by the purge worker in two batches of three
    monkeypatch.setattr(purge, "BATCH_SIZE", 3)
    monkeypatch.setattr(purge, "BATCHES_PER_RUN", 2)
    ann = connected(tenant, "ann", "Acme", "acme.example")
    ben = connected(tenant, "ben", "Acme", "acme.example")
    mail = [
        graph_message("jane@acme.example", [ann, ben], f"m{i}", days_ago=i + 1) for i in range(10)
    ]
    tenant.stack.sim.load_messages(ann, "inbox", mail)
    tenant.stack.sim.load_messages(ben, "inbox", [dict(m) for m in mail[:2]])
    tenant.sync()
    first = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "mail"})
    storage = tenant.stack.env["AzureWebJobsStorage"]
    worker = Services(Settings.from_env(tenant.stack.env)).purges
    (delivery,) = _drain(storage, tenant.tenant_id)
    worker.run(delivery)
    midway = _purge_status(tenant, ann, first.headers["Location"])

    # WHEN Ann starts the purge again through the API, then the job's deliveries run out
    second = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "mail"})
    pending = _drain(storage, tenant.tenant_id)
    queued_after_second = len(pending)
    deliveries = 1
    while pending and deliveries < 10:
        worker.run(pending[0])
        deliveries += 1
        pending = _drain(storage, tenant.tenant_id)
    final = _purge_status(tenant, ann, first.headers["Location"])

    # THEN the second start answered the running job at the same status URL and queued nothing
    # more; the job needed two more deliveries and counted every email once
    assert first.status_code == second.status_code == 202, second.text
    assert midway["state"] == "running"
    assert sum(midway["counts"].values()) == 6
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Location"] == first.headers["Location"]
    assert second.json()["statusUrl"] == first.json()["statusUrl"]
    assert queued_after_second == 1
    assert deliveries == 3
    assert final["state"] == "completed"
    assert final["counts"] == {"removed": 8, "keptShared": 2}
    assert sorted(e["subject"] for e in tenant.company_emails("Acme")) == ["m0", "m1"]
