"""The outbox worker on Azurite and the simulator: killed after each step, redelivered, limited.

The worker runs in the test process with a Graph client that can die right after any Graph
call returns (before the worker records it), which is where a crash hurts most. The queue is a
recording fake, so a postponed job's delay can be read and its redelivery played with a clock
moved on by that delay.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devstack.simulator import FaultRule, Simulator
from devstack.tls import create_tls_material
from shared.access.auth import Caller
from shared.adapters.blobs import BlobBodyStore
from shared.adapters.graph import GraphMailClient
from shared.adapters.graphsend import GraphSendClient
from shared.adapters.tables import TableEntityStore
from shared.directory.model import Tenant
from shared.directory.service import DirectoryService
from shared.errors import ConflictError
from shared.sending.message import MB, parse_email
from shared.sending.outbox import OUTBOX, OutboxService, outbox_job, payload_name, record_item
from shared.sending.schedule import DoNotDisturb
from shared.sending.worker import OutboxWorker
from shared.sync.leases import LeaseTable, mailbox_partition

if TYPE_CHECKING:
    from devstack.azurite import Azurite

SCOPES = ("Mail.ReadWrite", "Mail.Send", "MailboxSettings.Read")


class KilledError(Exception):
    """Stands for the worker's process dying."""


class DyingGraph:
    """A sending Graph client whose worker dies right after one named call returns."""

    def __init__(self, real: GraphSendClient, die_after: str | None) -> None:
        self._real = real
        self.die_after = die_after

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if name == self.die_after:
                self.die_after = None
                raise KilledError(name)
            return result

        return call


@dataclass
class RecordingQueue:
    """Stands in for JobQueue: keeps what was sent and with which delay."""

    sent: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)

    def send(self, queue: str, job: dict[str, Any], *, delay_s: int = 0) -> None:
        self.sent.append((queue, dict(job), delay_s))


@dataclass
class Settings:
    """The tenant's sending settings, as the directory would give them."""

    tenant: Tenant
    directory: DirectoryService | None = None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        return self.tenant

    def contact_time_zone(self, tenant_id: str, addresses: list[str]) -> str | None:
        if self.directory is None:
            return None
        return self.directory.contact_time_zone(tenant_id, addresses)


@dataclass
class Clock:
    """A clock the test moves."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return create_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sim(tls):
    simulator = Simulator(tls, api_audience="api://tests")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def storage(azurite: Azurite) -> tuple[TableEntityStore, BlobBodyStore]:
    text = azurite.connection_string
    tables = TableEntityStore(TableServiceClient.from_connection_string(text))
    tables.ensure_tables()
    blobs = BlobBodyStore(BlobServiceClient.from_connection_string(text))
    blobs.ensure_container()
    return tables, blobs


@pytest.fixture
def graph(sim: Simulator, tls: Any) -> GraphSendClient:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_pem)
    return GraphSendClient(GraphMailClient(sim.graph_url, session=session), session=session)


@dataclass
class Rig:
    """One tenant and user, with what a worker needs."""

    sim: Simulator
    tables: TableEntityStore
    blobs: BlobBodyStore
    graph: GraphSendClient
    tenant_id: str
    upn: str
    user_id: str
    queue: RecordingQueue = field(default_factory=RecordingQueue)
    clock: Clock = field(default_factory=lambda: Clock(datetime.now(UTC)))
    settings: Tenant | None = None
    directory: DirectoryService | None = None

    def worker(self, die_after: str | None = None) -> OutboxWorker:
        settings = self.settings or Tenant(self.tenant_id, "T", ("t.example",))
        return OutboxWorker(
            tables=self.tables,
            blobs=self.blobs,
            queue=self.queue,  # type: ignore[arg-type]
            graph=DyingGraph(self.graph, die_after),  # type: ignore[arg-type]
            tokens=lambda tenant, user: self.sim.issue_graph_token(self.upn, SCOPES),
            settings=Settings(settings, self.directory),
            clock=self.clock,
        )

    def submit(self, **fields: Any) -> dict[str, str]:
        body = {"to": ["jane@acme.example"], "subject": "Hi", "html": "<p>Hi</p>", **fields}
        row = record_item(
            self.tables,
            self.blobs,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            email=parse_email(body),
            now=self.clock.now.isoformat(),
        )
        return outbox_job(self.tenant_id, str(row["RowKey"]))

    def state(self, job: dict[str, str]) -> dict[str, Any]:
        row = self.tables.get(OUTBOX, self.tenant_id, job["id"])
        assert row is not None
        return row

    def posts(self, suffix: str) -> int:
        return sum(
            1
            for r in self.sim.requests_seen()
            if r.user == self.user_id and r.method == "POST" and r.path.endswith(suffix)
        )


@pytest.fixture
def rig(sim, storage, graph) -> Rig:
    tenant_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    upn = f"u{user_id[:8]}@t.example"
    sim.add_user(tenant_id, upn, "Sender", oid=user_id)
    return Rig(sim, *storage, graph, tenant_id, upn, user_id)


def files() -> list[dict[str, str]]:
    """One inline and one upload-session attachment."""
    small = base64.b64encode(b"s" * (100 * 1024)).decode()
    large = base64.b64encode(b"L" * int(3.2 * MB)).decode()
    return [
        {"name": "small.pdf", "contentType": "application/pdf", "contentBytes": small},
        {"name": "large.bin", "contentType": "application/octet-stream", "contentBytes": large},
    ]


@pytest.mark.parametrize(
    "step",
    ["find_draft", "create_draft", "add_inline_attachment", "upload_attachment", "send"],
)
def test_killed_after_a_graph_step_then_redelivered_sends_exactly_once(rig: Rig, step: str):
    """A crash right after any Graph call, before it is recorded, never sends twice or leaks."""
    # GIVEN an email with two attachments, and a worker that dies right after one Graph step
    job = rig.submit(attachments=files())
    if step == "find_draft":
        # The draft step itself died once already, so the next delivery looks for the draft.
        with pytest.raises(KilledError):
            rig.worker("create_draft").run(job)

    # WHEN the worker dies and the host redelivers the job to a healthy worker
    with pytest.raises(KilledError):
        rig.worker(step).run(job)
    rig.worker().run(job)

    # THEN it was sent once, with each attachment once, and no draft is left
    assert rig.state(job)["state"] == "sent"
    sent = rig.sim.messages(rig.upn, "sentitems")
    assert len(sent) == 1
    assert rig.sim.messages(rig.upn, "drafts") == []
    names = [a["name"] for a in rig.sim.attachments(rig.upn, sent[0]["id"])]
    assert names == ["small.pdf", "large.bin"]
    assert rig.posts("/send") == 1
    assert sent[0]["internetMessageId"] == rig.state(job)["internetMessageId"]


def test_redelivery_of_a_sent_item_does_nothing(rig: Rig):
    """A duplicate delivery after the item is sent calls no Graph step."""
    # GIVEN a sent item
    job = rig.submit()
    rig.worker().run(job)
    before = len(rig.sim.requests_seen())

    # WHEN the same job comes again
    rig.worker().run(job)

    # THEN nothing more reached Graph
    assert len(rig.sim.requests_seen()) == before
    assert len(rig.sim.messages(rig.upn, "sentitems")) == 1


def test_failed_send_deletes_its_draft(rig: Rig):
    """Graph refusing the send for good marks the item failed and leaves no orphan draft."""
    # GIVEN Graph refuses the send with a 400
    rule = FaultRule(
        path=r"/send$",
        status=400,
        user=rig.upn,
        body={"error": {"code": "ErrorInvalidRecipients", "message": "no"}},
    )
    rig.sim.add_fault(rule)
    job = rig.submit()

    # WHEN the worker runs
    rig.worker().run(job)

    # THEN the item failed with Graph's code and the draft is gone
    row = rig.state(job)
    assert row["state"] == "failed"
    assert row["error"] == "ErrorInvalidRecipients"
    assert rig.sim.messages(rig.upn, "drafts") == []
    assert rig.sim.messages(rig.upn, "sentitems") == []


def test_daily_limit_overflow_goes_out_after_local_midnight(rig: Rig):
    """Limit 2 in New York: the third automatic email at 23:30 local waits 30 minutes, then goes."""
    # GIVEN a limit of 2, the sender in New York, and 23:30 local time
    rig.settings = Tenant(rig.tenant_id, "T", ("t.example",), daily_automatic_limit=2)
    rig.sim.set_mailbox_time_zone(rig.upn, "Eastern Standard Time")
    rig.clock.now = datetime(2026, 1, 14, 23, 30, tzinfo=UTC) + timedelta(hours=5)
    jobs = [rig.submit(kind="automatic") for _ in range(3)]

    # WHEN the worker runs the three jobs
    for job in jobs:
        rig.worker().run(job)

    # THEN two are sent and the third is put back until local midnight, not dropped
    states = [rig.state(job)["state"] for job in jobs]
    assert states == ["sent", "sent", "queued"]
    (queue, again, delay) = rig.queue.sent[-1]
    assert (queue, again, delay) == ("outbox", jobs[2], 30 * 60)
    assert rig.state(jobs[2])["notBefore"] == "2026-01-15T05:00:00+00:00"

    # WHEN it is redelivered once the delay has passed
    rig.clock.now += timedelta(seconds=delay)
    rig.worker().run(again)

    # THEN it is sent and counted on the new local day
    assert rig.state(jobs[2])["state"] == "sent"
    assert rig.state(jobs[2])["countedDay"] == "2026-01-15"


def test_manual_email_ignores_limit_and_quiet_hours(rig: Rig):
    """A manual email goes out at once though the limit is used up and it is night."""
    # GIVEN a limit of 1 already used and a window covering now
    window = DoNotDisturb(start=time(0, 0), end=time(23, 59))
    rig.settings = Tenant(
        rig.tenant_id, "T", ("t.example",), daily_automatic_limit=1, do_not_disturb=window
    )
    rig.clock.now = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)

    # WHEN a manual email is worked
    job = rig.submit(kind="manual")
    rig.worker().run(job)

    # THEN it is sent and nothing was postponed
    assert rig.state(job)["state"] == "sent"
    assert rig.queue.sent == []


def test_quiet_hours_across_spring_forward_delay_to_local_morning(rig: Rig):
    """22:00-07:00 in New York on 7-8 March 2026: an email at 23:00 EST waits 7 real hours."""
    # GIVEN do-not-disturb hours and the sender in New York at 23:00 EST on 7 March
    window = DoNotDisturb(start=time(22, 0), end=time(7, 0))
    rig.settings = Tenant(rig.tenant_id, "T", ("t.example",), do_not_disturb=window)
    rig.sim.set_mailbox_time_zone(rig.upn, "America/New_York")
    rig.clock.now = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    job = rig.submit(kind="automatic")

    # WHEN the worker runs it
    rig.worker().run(job)

    # THEN it waits until 07:00 EDT (11:00 UTC), 7 hours, and nothing reached the mailbox
    assert rig.state(job)["state"] == "queued"
    assert rig.queue.sent[-1][2] == 7 * 3600
    assert rig.sim.messages(rig.upn, "drafts") == []

    # WHEN it comes back at 07:00 local
    rig.clock.now += timedelta(hours=7)
    rig.worker().run(job)

    # THEN it is sent
    assert rig.state(job)["state"] == "sent"


def recipient_zone_rig(rig: Rig) -> Rig:
    """Quiet hours 22:00-07:00 kept in the recipient's zone; the sender in New York; one
    customer contact (jane@acme.example) in Tokyo, stored through the real directory."""
    window = DoNotDisturb(start=time(22, 0), end=time(7, 0), zone_of="recipient")
    rig.settings = Tenant(rig.tenant_id, "T", ("t.example",), do_not_disturb=window)
    rig.sim.set_mailbox_time_zone(rig.upn, "America/New_York")
    rig.directory = DirectoryService(rig.tables)
    rig.directory.upsert_tenant(rig.tenant_id, {"name": "T", "ownDomains": ["t.example"]})
    contacts = [
        {"email": "bob@acme.example", "name": "Bob"},
        {"email": "jane@acme.example", "name": "Jane", "timeZone": "Asia/Tokyo"},
    ]
    company = {"name": "Acme", "domains": ["acme.example"], "contacts": contacts}
    rig.directory.create_company(rig.tenant_id, company)
    return rig


def test_quiet_hours_in_the_recipients_zone_let_a_late_evening_email_go(rig: Rig):
    """23:00 in New York is 13:00 in Tokyo: an email to a Tokyo contact goes at once."""
    # GIVEN quiet hours in the recipient's zone, and 23:00 EST (04:00 UTC) on 14 January
    recipient_zone_rig(rig)
    rig.clock.now = datetime(2026, 1, 14, 4, 0, tzinfo=UTC)
    job = rig.submit(kind="automatic", to=["unknown@elsewhere.example", "jane@acme.example"])

    # WHEN the worker runs it
    rig.worker().run(job)

    # THEN it is sent without waiting
    assert rig.state(job)["state"] == "sent"
    assert rig.queue.sent == []


def test_quiet_hours_in_the_recipients_zone_hold_an_email_until_their_morning(rig: Rig):
    """09:00 in New York is 23:00 in Tokyo: the email waits until 07:00 in Tokyo."""
    # GIVEN quiet hours in the recipient's zone, and 09:00 EST (14:00 UTC) on 14 January
    recipient_zone_rig(rig)
    rig.clock.now = datetime(2026, 1, 14, 14, 0, tzinfo=UTC)
    job = rig.submit(kind="automatic", to=["jane@acme.example"])

    # WHEN the worker runs it
    rig.worker().run(job)

    # THEN it waits 8 hours, until 07:00 JST (22:00 UTC), and nothing reached the mailbox
    assert rig.state(job)["state"] == "queued"
    assert rig.state(job)["notBefore"] == "2026-01-14T22:00:00+00:00"
    assert rig.queue.sent[-1][2] == 8 * 3600
    assert rig.sim.messages(rig.upn, "drafts") == []


def test_quiet_hours_in_the_recipients_zone_use_the_senders_without_a_known_zone(rig: Rig):
    """A recipient who is a contact without a zone leaves the sender's zone in charge."""
    # GIVEN quiet hours in the recipient's zone, 23:00 EST, and a contact with no zone
    recipient_zone_rig(rig)
    rig.clock.now = datetime(2026, 1, 14, 4, 0, tzinfo=UTC)
    job = rig.submit(kind="automatic", to=["bob@acme.example"])

    # WHEN the worker runs it
    rig.worker().run(job)

    # THEN it waits until 07:00 in New York (12:00 UTC), 8 hours
    assert rig.state(job)["state"] == "queued"
    assert rig.queue.sent[-1][2] == 8 * 3600


def test_cancel_landing_while_the_draft_is_made_deletes_it(rig: Rig):
    """A cancel recorded while Graph creates the draft wins: the draft is deleted, nothing sent."""
    # GIVEN an automatic email, and a cancel that lands during draft creation
    job = rig.submit(kind="automatic")
    real_create = rig.graph.create_draft

    def create_then_cancel(token: str, message: Any) -> Any:
        created = real_create(token, message)
        row = rig.state(job)
        rig.tables.update(OUTBOX, {**row, "state": "cancelled"}, etag=row["_etag"])
        return created

    rig.graph.create_draft = create_then_cancel  # type: ignore[method-assign]

    # WHEN the worker runs
    rig.worker().run(job)

    # THEN it stays cancelled and the mailbox holds nothing
    assert rig.state(job)["state"] == "cancelled"
    assert rig.sim.messages(rig.upn, "drafts") == []
    assert rig.sim.messages(rig.upn, "sentitems") == []


def test_poisoned_job_is_marked_failed_and_its_draft_deleted(rig: Rig):
    """The poison worker marks an item that kept failing as failed and deletes its draft."""
    # GIVEN an item whose worker died after the draft was made and recorded
    job = rig.submit(attachments=files())
    with pytest.raises(KilledError):
        rig.worker("add_inline_attachment").run(job)
    assert len(rig.sim.messages(rig.upn, "drafts")) == 1

    # WHEN the job lands in outbox-poison
    rig.worker().fail(job)

    # THEN the item is failed, named as poisoned, and the mailbox holds no draft
    row = rig.state(job)
    assert (row["state"], row["error"]) == ("failed", "poisoned")
    assert rig.sim.messages(rig.upn, "drafts") == []

    # AND a late redelivery of the job does nothing
    rig.worker().run(job)
    assert rig.sim.messages(rig.upn, "sentitems") == []


def _service(rig: Rig) -> OutboxService:
    """The outbox API's service; cancelling needs only its storage."""
    unused = cast(Any, None)
    return OutboxService(
        tables=rig.tables,
        blobs=rig.blobs,
        queue=unused,
        directory=unused,
        permissions=unused,
        reader=unused,
        connections=unused,
        clock=rig.clock,
    )


def test_cancel_after_the_worker_asked_for_a_draft_is_refused_and_the_email_goes_once(rig: Rig):
    """Once Graph may hold a draft, a cancel is refused, so no draft is left behind."""
    # GIVEN an automatic email whose worker died right after Graph made its draft
    job = rig.submit(kind="automatic")
    with pytest.raises(KilledError):
        rig.worker("create_draft").run(job)
    caller = Caller(rig.tenant_id, rig.user_id, frozenset(), rig.upn)

    # WHEN the user cancels it and the job is delivered again
    with pytest.raises(ConflictError):
        _service(rig).cancel(caller, job["id"])
    rig.worker().run(job)

    # THEN it was sent once and no draft remains
    assert rig.state(job)["state"] == "sent"
    assert rig.sim.messages(rig.upn, "drafts") == []
    assert len(rig.sim.messages(rig.upn, "sentitems")) == 1


def test_cancelled_email_leaves_no_payload(rig: Rig):
    """Cancelling removes the stored recipients, subject and body, also on a late delivery."""
    # GIVEN a queued automatic email, cancelled through the service
    job = rig.submit(kind="automatic")
    caller = Caller(rig.tenant_id, rig.user_id, frozenset(), rig.upn)
    _service(rig).cancel(caller, job["id"])

    # WHEN its job is still delivered
    rig.worker().run(job)

    # THEN nothing of the email is stored
    assert rig.state(job)["state"] == "cancelled"
    assert rig.blobs.get_text(payload_name(rig.tenant_id, job["id"])) is None


def test_a_token_graph_refuses_is_refreshed_once_and_the_email_goes_once(rig: Rig):
    """A 401 from Graph mid-way refreshes the token and resumes, never sending twice."""
    # GIVEN a worker whose token source can refresh, and Graph refusing the send once
    refreshed: list[bool] = []

    def tokens(tenant: str, user: str, *, force_refresh: bool = False) -> str:
        refreshed.append(force_refresh)
        return rig.sim.issue_graph_token(rig.upn, SCOPES)

    worker = rig.worker()
    worker._tokens = tokens  # type: ignore[assignment]
    rig.sim.add_fault(FaultRule(r"/send$", 401, service="graph", user=rig.upn, count=1))
    job = rig.submit()

    # WHEN it runs
    worker.run(job)

    # THEN it refreshed once and sent once
    assert refreshed == [False, True]
    assert rig.state(job)["state"] == "sent"
    assert len(rig.sim.messages(rig.upn, "sentitems")) == 1


def test_busy_mailbox_sends_nothing_until_a_request_slot_is_free(rig: Rig):
    """With all four request slots of the sender's mailbox held, the email waits its turn."""
    # GIVEN a queued email and other jobs holding every request slot of the sender's mailbox
    job = rig.submit(kind="manual")
    leases = LeaseTable(rig.tables)
    partition = mailbox_partition(rig.tenant_id, rig.user_id)
    held = [leases.take(partition, [f"slot-{n}"], "sync-job") for n in range(4)]

    # WHEN the worker runs the job
    rig.worker().run(job)

    # THEN nothing reached Graph and the job was sent again for a few seconds later
    assert rig.state(job)["state"] == "queued"
    assert rig.posts("/messages") == 0
    [(queue, again, delay)] = rig.queue.sent
    assert (queue, again) == ("outbox", job)
    assert 1 <= delay <= 10

    # WHEN a slot is free again and the job comes back
    leases.release(held[2])
    rig.worker().run(again)

    # THEN it is sent
    assert rig.state(job)["state"] == "sent"
