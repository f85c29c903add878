"""Unit tests for shared.sync.mail with hand-written fakes for every collaborator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.graph import DeltaPage
from shared.adapters.queues import MAIL_SYNC_QUEUE
from shared.adapters.tablelimits import table_key
from shared.errors import (
    ConflictError,
    DeltaCursorExpiredError,
    InvalidJobError,
    ReauthRequiredError,
    ThrottledError,
    TransientError,
)
from shared.matching.companies import DROP_INTERNAL, CompanyMatchData
from shared.rules.model import ContentCondition, ParticipantCondition, Rule
from shared.rules.store import DECISIONS, RuleStore
from shared.sync.connections import ACTIVE, MAIL, REAUTH_REQUIRED, REVOKED, Connection, Folder
from shared.sync.folderwalk import PageBudget
from shared.sync.jobs import MAX_REQUEUE_DELAY_S
from shared.sync.leases import LeaseTable, mailbox_partition
from shared.sync.mail import CURSORS, DROP_DRAFT, MailJob, MailSyncService
from shared.sync.mailjob import MAX_DONE_FOLDERS, MAX_FOLDER_ID, continued_folders
from shared.sync.store import KeptMessage
from tests.unit.fakes import FakeQueue, FakeTables, SentJob

TENANT, USER = "tenant-1", "user-1"
JOB = {"kind": MAIL, "tenant": TENANT, "user": USER}
INBOX = Folder("inbox-id", "Inbox")
SENT = Folder("sent-id", "Sent Items")
BACKFILL_DAYS = 30


def _connection(state: str = ACTIVE, folders: tuple[Folder, ...] = (INBOX,)) -> Connection:
    return Connection(
        tenant_id=TENANT,
        user_id=USER,
        kind=MAIL,
        state=state,
        upn="alice@vendor.example",
        folders=folders,
        home_account_id="home-1",
        scopes=("Mail.Read",),
    )


def _mail(item_id: str, sender: str = "jane@customer.example", **fields: Any) -> dict[str, Any]:
    """A Graph message from ``sender`` to Alice."""
    return {
        "id": item_id,
        "internetMessageId": f"<{item_id}@mail.example>",
        "from": {"emailAddress": {"name": "", "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "Alice", "address": "alice@vendor.example"}}],
        "sentDateTime": "2024-05-01T10:00:00Z",
        **fields,
    }


def _cursor_key() -> tuple[str, str]:
    return _connection().key, table_key(INBOX.folder_id)


@dataclass
class FakeConnections:
    """ConnectionStore stand-in: one stored connection and a scripted token outcome."""

    connection: Connection | None
    token_error: Exception | None = None
    errors: list[tuple[str, str | None]] = field(default_factory=list)
    rounds: list[Mapping[str, Any]] = field(default_factory=list)

    def get(self, tenant_id: str, user_id: str, kind: str = MAIL) -> Connection | None:
        found = self.connection
        if found and (found.tenant_id, found.user_id, found.kind) == (tenant_id, user_id, kind):
            return found
        return None

    def access_token(self, connection: Connection, *, force_refresh: bool = False) -> str:
        if self.token_error is not None:
            raise self.token_error
        return "token-1"

    def record_error(self, connection: Connection, code: str, *, state: str | None = None) -> None:
        self.errors.append((code, state))

    def record_round(
        self, connection: Connection, stats: Mapping[str, Any], *, slot: object = None
    ) -> None:
        self.rounds.append(stats)

    def set_folders(self, connection: Connection, folders: list[Folder]) -> Connection:
        self.connection = Connection(
            **{
                **{name: getattr(connection, name) for name in connection.__dataclass_fields__},
                "folders": tuple(folders),
            }
        )
        return self.connection


@dataclass(frozen=True)
class DeltaCall:
    """One delta round the service asked for."""

    folder_id: str
    resume_url: str | None
    since: datetime | None


@dataclass
class FakeGraph:
    """GraphMailClient stand-in: per folder, links lead to pages or errors.

    ``links[(folder_id, url)]`` answers a request for ``url``; the first round of a folder
    asks for ``url=None``.
    """

    links: dict[tuple[str, str | None], DeltaPage | Exception] = field(default_factory=dict)
    calls: list[DeltaCall] = field(default_factory=list)
    before_page: Callable[[str, str | None], object] | None = None
    folder_error: Exception | None = None

    def get_folder(self, token: str, folder: str) -> dict[str, Any]:
        if self.folder_error is not None:
            raise self.folder_error
        known = {"inbox": INBOX, "sentitems": SENT}[folder]
        return {"id": known.folder_id, "displayName": known.name}

    def chain(self, folder_id: str, start: str | None, pages: list[list[dict[str, Any]]]) -> None:
        """Script a round from ``start``: pages joined by next links ending with a delta link."""
        url = start
        for number, items in enumerate(pages, start=1):
            last = number == len(pages)
            following = None if last else f"{folder_id}-from-{start}-next-{number}"
            delta = f"{folder_id}-from-{start}-delta" if last else None
            self.links[(folder_id, url)] = DeltaPage(items, following, delta)
            url = following

    def delta_pages(
        self, token: str, folder_id: str, *, resume_url: str | None, since: datetime | None
    ) -> Iterator[DeltaPage]:
        self.calls.append(DeltaCall(folder_id, resume_url, since))
        url = resume_url
        while True:
            if self.before_page is not None:
                self.before_page(folder_id, url)
            answer = self.links[(folder_id, url)]
            if isinstance(answer, Exception):
                raise answer
            yield answer
            if answer.next_link is None:
                return
            url = answer.next_link


@dataclass(frozen=True)
class FakeTenant:
    own_domains: tuple[str, ...]
    backfill_days: int


@dataclass
class FakeDirectory:
    """DirectoryService stand-in: one tenant with one customer company."""

    def get_tenant(self, tenant_id: str) -> FakeTenant | None:
        return FakeTenant(("vendor.example",), BACKFILL_DAYS) if tenant_id == TENANT else None

    def company_match_data(self, tenant_id: str) -> list[CompanyMatchData]:
        return [CompanyMatchData("acme", domains=("customer.example",))]


@dataclass
class FakeEmails:
    """EmailStore stand-in: records saved item ids; fails on the ids listed in ``fail_on``."""

    saved: list[str] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)

    def save(self, *, message: Mapping[str, Any], company_ids: frozenset[str], **_: Any) -> bool:
        item_id = str(message["id"])
        if item_id in self.fail_on:
            msg = "writing emails failed"
            raise TransientError(msg)
        assert company_ids == {"acme"}
        self.saved.append(item_id)
        return True

    def save_page(self, *, kept: list[KeptMessage], **_: Any) -> list[bool]:
        return [self.save(message=entry.message, company_ids=entry.company_ids) for entry in kept]

    def item(self, connection: str, item_id: str) -> dict[str, Any] | None:
        return {"emailKey": "k"} if item_id in self.saved else None

    def folder_items(self, connection: str, folder_id: str) -> list[dict[str, Any]]:
        # Every saved item counts as saved again by the round: nothing is left unseen.
        return []


@dataclass
class World:
    """The service under test and every fake around it."""

    connections: FakeConnections
    graph: FakeGraph
    emails: FakeEmails
    queue: FakeQueue
    tables: FakeTables
    service: MailSyncService

    def cursor(self) -> dict[str, Any] | None:
        return self.tables.get(CURSORS, *_cursor_key())

    def store_cursor(self, *, next_link: str = "", delta_link: str = "") -> None:
        partition, row = _cursor_key()
        entity = {"PartitionKey": partition, "RowKey": row}
        self.tables.upsert(CURSORS, {**entity, "nextLink": next_link, "deltaLink": delta_link})


def _world(connection: Connection | None = None, *, page_budget: int = 200) -> World:
    connections = FakeConnections(connection or _connection())
    graph, emails, queue, tables = FakeGraph(), FakeEmails(), FakeQueue(), FakeTables()
    service = MailSyncService(
        connections=connections,  # type: ignore[arg-type]
        graph=graph,  # type: ignore[arg-type]
        directory=FakeDirectory(),  # type: ignore[arg-type]
        emails=emails,  # type: ignore[arg-type]
        queue=queue,  # type: ignore[arg-type]
        tables=tables,  # type: ignore[arg-type]
        page_budget=page_budget,
    )
    return World(connections, graph, emails, queue, tables, service)


def test_run_first_round_stores_pages_and_records_round():
    """A first round reads the backfill window, stores each page and records the round."""
    # GIVEN a folder with two pages of customer mail
    world = _world()
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1"), _mail("m2")], [_mail("m3")]])
    started = datetime.now(UTC)

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN every message is stored, the window is the tenant's, and the round is recorded
    assert world.emails.saved == ["m1", "m2", "m3"]
    (call,) = world.graph.calls
    assert call.resume_url is None
    assert call.since is not None
    expected_since = started - timedelta(days=BACKFILL_DAYS)
    assert abs(call.since - expected_since) < timedelta(minutes=1)
    assert stats is not None
    assert (stats.pages, stats.kept, stats.stored_new, stats.complete) == (2, 3, 3, True)
    assert world.connections.rounds == [stats.as_record()]
    cursor = world.cursor()
    assert cursor is not None
    assert (cursor["nextLink"], cursor["deltaLink"]) == ("", "inbox-id-from-None-delta")
    assert world.queue.sent == []


def test_run_saves_cursor_only_after_page_is_stored():
    """When storing page 2 fails, the cursor still holds page 1's nextLink."""
    # GIVEN three pages, and a store that fails on an item of page 2
    world = _world()
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")], [_mail("m2"), _mail("m3")], []])
    world.emails.fail_on = {"m3"}

    # WHEN the job runs
    with pytest.raises(TransientError):
        world.service.run(JOB)

    # THEN the cursor points at page 2, so a retry re-reads it; no round was recorded
    cursor = world.cursor()
    assert cursor is not None
    assert cursor["nextLink"] == "inbox-id-from-None-next-1"
    assert world.emails.saved == ["m1", "m2"]
    assert world.connections.rounds == []


def test_run_store_failure_on_first_page_leaves_no_cursor():
    """When storing the first page fails, no cursor is written at all."""
    # GIVEN a first page whose item cannot be stored
    world = _world()
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")], [_mail("m2")]])
    world.emails.fail_on = {"m1"}

    # WHEN the job runs
    with pytest.raises(TransientError):
        world.service.run(JOB)

    # THEN there is no cursor, so a retry starts the round again
    assert world.cursor() is None


def test_run_resumes_from_stored_next_link():
    """An interrupted round continues from its stored nextLink, not from the deltaLink."""
    # GIVEN a cursor with a nextLink left by an interrupted round
    world = _world()
    world.store_cursor(next_link="stored-next", delta_link="older-delta")
    world.graph.chain(INBOX.folder_id, "stored-next", [[_mail("m5")], [_mail("m6")]])

    # WHEN the job runs
    world.service.run(JOB)

    # THEN Graph was asked for the stored link and the round ends on its new deltaLink
    assert [c.resume_url for c in world.graph.calls] == ["stored-next"]
    assert world.emails.saved == ["m5", "m6"]
    cursor = world.cursor()
    assert cursor is not None
    assert (cursor["nextLink"], cursor["deltaLink"]) == ("", "inbox-id-from-stored-next-delta")


def test_run_follows_stored_delta_link_for_next_round():
    """A finished round's deltaLink starts the next round."""
    # GIVEN a cursor holding only a deltaLink
    world = _world()
    world.store_cursor(delta_link="last-delta")
    world.graph.chain(INBOX.folder_id, "last-delta", [[_mail("m7")]])

    # WHEN the job runs
    world.service.run(JOB)

    # THEN the round started from the deltaLink
    assert [c.resume_url for c in world.graph.calls] == ["last-delta"]
    assert world.emails.saved == ["m7"]


def test_run_page_budget_exhausted_requeues_without_recording_round():
    """A job that reads its page budget re-queues itself and records no finished round."""
    # GIVEN a budget of two pages and a folder of four
    world = _world(page_budget=2)
    world.graph.chain(INBOX.folder_id, None, [[_mail(f"m{i}")] for i in range(4)])

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN two pages were stored, the job is queued again at once, the cursor holds page 3
    assert world.emails.saved == ["m0", "m1"]
    assert stats is not None
    assert stats.complete is False
    assert world.queue.sent == [SentJob(MAIL_SYNC_QUEUE, JOB, 0)]
    assert world.connections.rounds == []
    cursor = world.cursor()
    assert cursor is not None
    assert cursor["nextLink"] == "inbox-id-from-None-next-2"


def test_run_budget_reached_on_last_page_completes():
    """Reaching the budget on the page that carries the deltaLink still completes the round."""
    # GIVEN a budget of two pages and a folder of exactly two
    world = _world(page_budget=2)
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")], [_mail("m2")]])

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN the round is recorded and nothing re-queued
    assert stats is not None
    assert stats.complete is True
    assert world.queue.sent == []
    assert len(world.connections.rounds) == 1


def test_run_expired_cursor_resets_and_rereads_folder_once():
    """An expired stored link deletes the cursor and the folder is read again from scratch."""
    # GIVEN a stored link Graph no longer knows, and a fresh round that works
    world = _world()
    world.store_cursor(next_link="stale-next", delta_link="stale-delta")
    world.graph.links[(INBOX.folder_id, "stale-next")] = DeltaCursorExpiredError("410")
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")]])

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN the second read started fresh with the window, and the new cursor replaced the old
    assert [c.resume_url for c in world.graph.calls] == ["stale-next", None]
    assert world.graph.calls[1].since is not None
    assert world.emails.saved == ["m1"]
    assert stats is not None
    assert stats.complete is True
    cursor = world.cursor()
    assert cursor is not None
    assert (cursor["nextLink"], cursor["deltaLink"]) == ("", "inbox-id-from-None-delta")


def test_run_cursor_expiring_twice_backs_off():
    """A folder whose cursor expires again after the reset re-queues the job with a delay."""
    # GIVEN a stored link and a fresh round that both expire
    world = _world()
    world.store_cursor(next_link="stale-next")
    world.graph.links[(INBOX.folder_id, "stale-next")] = DeltaCursorExpiredError("410")
    world.graph.links[(INBOX.folder_id, None)] = DeltaCursorExpiredError("410")

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN it read exactly twice, then re-queued itself five minutes out and recorded why
    assert result is None
    assert [c.resume_url for c in world.graph.calls] == ["stale-next", None]
    assert world.queue.sent == [SentJob(MAIL_SYNC_QUEUE, JOB, 300)]
    assert world.connections.errors == [("delta_reset_backoff", None)]
    assert world.connections.rounds == []


def test_run_throttled_requeues_with_delay_and_no_error():
    """A long throttle re-queues the job after the wait and records no error."""
    # GIVEN Graph asking for two minutes
    world = _world()
    world.graph.links[(INBOX.folder_id, None)] = ThrottledError("429", retry_after_s=120)

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN the same job is queued to become visible after the wait, and nothing else happens
    assert result is None
    assert world.queue.sent == [SentJob(MAIL_SYNC_QUEUE, JOB, 121)]
    assert world.connections.errors == []
    assert world.connections.rounds == []


@pytest.mark.parametrize("wait", [float("inf"), float("nan"), 1e300, -5.0])
def test_run_throttled_for_a_wait_past_counting_requeues_within_the_cap(wait):
    """A wait no integer holds, or a negative one, re-queues the job within 1 s and an hour."""
    # GIVEN Graph throttling with a wait that is infinite, not a number, huge or negative
    world = _world()
    world.graph.links[(INBOX.folder_id, None)] = ThrottledError("429", retry_after_s=wait)

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN the job is re-queued (never raised toward poison) with a delay a queue accepts
    assert result is None
    [sent] = world.queue.sent
    assert (sent.queue, sent.job) == (MAIL_SYNC_QUEUE, JOB)
    assert 1 <= sent.delay_s <= MAX_REQUEUE_DELAY_S
    assert world.connections.rounds == []


def test_run_reauth_required_records_state_without_graph_call():
    """A refused grant marks the connection reauth_required and calls no Graph API."""
    # GIVEN a connection whose token refresh Microsoft refuses
    world = _world()
    world.connections.token_error = ReauthRequiredError("invalid_grant:70008", "expired")

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN the code and new state are recorded, and Graph was never asked
    assert result is None
    assert world.connections.errors == [("invalid_grant:70008", REAUTH_REQUIRED)]
    assert world.graph.calls == []
    assert world.queue.sent == []


@pytest.mark.parametrize("state", [REAUTH_REQUIRED, REVOKED, None])
def test_run_inactive_or_missing_connection_is_noop(state):
    """A job for a connection that is not active, or gone, does nothing."""
    # GIVEN a connection in another state, or none at all
    world = _world()
    world.connections.connection = None if state is None else _connection(state)

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN nothing was read, written or queued
    assert result is None
    assert world.graph.calls == []
    assert world.connections.errors == world.connections.rounds == []
    assert world.queue.sent == []
    assert world.tables.tables == {}


def test_run_drops_drafts_and_internal_mail_with_reasons():
    """Drafts and internal-only mail are counted as dropped, with their reasons, not stored."""
    # GIVEN a page with a customer draft, an internal mail, a kept mail and a removal
    world = _world()
    items = [
        _mail("draft", isDraft=True),
        _mail("internal", sender="bob@vendor.example"),
        _mail("kept"),
        {"id": "gone", "@removed": {"reason": "deleted"}},
    ]
    world.graph.chain(INBOX.folder_id, None, [items])

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN only the customer mail is stored, and the reasons are in the recorded round
    assert world.emails.saved == ["kept"]
    assert stats is not None
    assert dict(stats.dropped) == {DROP_DRAFT: 1, DROP_INTERNAL: 1}
    assert (stats.seen, stats.kept, stats.removed_seen) == (3, 1, 1)
    assert world.connections.rounds[0]["dropped"] == {"draft": 1, "internal_only": 1}


def test_run_walks_every_folder():
    """Each chosen folder keeps its own cursor and all are read in one job."""
    # GIVEN two folders with one page each
    world = _world(_connection(folders=(INBOX, SENT)))
    world.graph.chain(INBOX.folder_id, None, [[_mail("in-1")]])
    world.graph.chain(SENT.folder_id, None, [[_mail("out-1")]])

    # WHEN the job runs
    world.service.run(JOB)

    # THEN both folders were read (at once, so in either order) and each has its own cursor
    assert sorted(c.folder_id for c in world.graph.calls) == [INBOX.folder_id, SENT.folder_id]
    assert sorted(world.emails.saved) == ["in-1", "out-1"]
    assert len(world.tables.rows(CURSORS)) == 2


def test_run_cursor_moved_by_another_worker_ends_quietly():
    """A lost race on the cursor row ends the job: the other job carries the round on."""
    # GIVEN a cursor write that another worker wins
    world = _world()
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")]])

    def lose_race(operation: str, table: str, _: object) -> None:
        if table == CURSORS and operation in ("create", "update"):
            raise ConflictError(table)

    world.tables.fail = lose_race

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN it ends without error, retry or a finished round
    assert result is None
    assert world.queue.sent == []
    assert world.connections.errors == []
    assert world.connections.rounds == []


@pytest.mark.parametrize(
    "job",
    [
        {},
        {"kind": "calendar", "tenant": TENANT, "user": USER},
        {"tenant": TENANT, "user": USER},
        {"kind": MAIL, "user": USER},
        {"kind": MAIL, "tenant": TENANT},
        {"kind": MAIL, "tenant": 7, "user": USER},
        {"kind": MAIL, "tenant": TENANT, "user": None},
    ],
    ids=["empty", "other-kind", "no-kind", "no-tenant", "no-user", "int-tenant", "null-user"],
)
def test_mail_job_parse_rejects_bad_jobs(job):
    """Jobs without kind mail and string tenant and user raise InvalidJobError."""
    # GIVEN a job the producer never sends
    world = _world()

    # WHEN it is parsed, or run, THEN it is refused before anything is read
    with pytest.raises(InvalidJobError):
        MailJob.parse(job)
    with pytest.raises(InvalidJobError):
        world.service.run(job)

    assert world.graph.calls == []


def test_mail_job_round_trips_through_message():
    """A parsed job gives back the message it was parsed from."""
    # GIVEN a valid job message

    # WHEN it is parsed and turned back into a message
    job = MailJob.parse(JOB)

    # THEN both match
    assert (job.tenant_id, job.user_id) == (TENANT, USER)
    assert job.as_message() == JOB


def test_run_blocking_rules_drop_before_storing_and_leave_only_a_decision():
    """A blocked message is not stored; its decision record names the rule, not the message."""
    # GIVEN a tenant rule blocking subjects that mention pensions, and Alice's own rule
    world = _world()
    rules = RuleStore(world.tables)  # type: ignore[arg-type]
    pension = ContentCondition("subject", "pension")
    rules.put_rule(TENANT, None, Rule("tenant-rule", "Pensions", (pension,)))
    jane = ParticipantCondition("sender", addresses=("jane@customer.example",))
    rules.put_rule(TENANT, USER, Rule("own-rule", "Jane", (jane,), scope="user"))
    world.graph.chain(
        INBOX.folder_id,
        None,
        [
            [
                _mail("m1", sender="joe@customer.example", subject="Pension plan"),
                _mail("m2", sender="jane@customer.example", subject="Hi"),
                _mail("m3", sender="joe@customer.example", subject="Order"),
            ]
        ],
    )

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN only m3 is stored and each drop has one record with its rule and hashed ids only
    assert world.emails.saved == ["m3"]
    assert stats is not None
    assert dict(stats.dropped) == {"rule": 2}
    records = world.tables.rows(DECISIONS)
    assert sorted(row["ruleId"] for row in records) == ["own-rule", "tenant-rule"]
    assert "m1" not in str(records)
    assert "customer.example" not in str(records)
    assert "Pension" not in str(records)


ARCHIVE = Folder("archive-id", "Archive")


def _hold_slots(world: World, count: int) -> None:
    """Let other jobs (calendar, sending) hold ``count`` of the mailbox's four slots."""
    others = LeaseTable(world.tables)  # type: ignore[arg-type]
    slots = [f"slot-{n}" for n in range(4)]
    for n in range(count):
        assert others.take(mailbox_partition(TENANT, USER), slots, f"other-{n}") is not None


def test_run_syncs_folders_at_once():
    """Two folders are read at the same time: each first page waits for the other's request."""
    # GIVEN two folders whose first pages are only answered once both were asked for
    world = _world(_connection(folders=(INBOX, SENT)))
    world.graph.chain(INBOX.folder_id, None, [[_mail("in-1")]])
    world.graph.chain(SENT.folder_id, None, [[_mail("out-1")]])
    both = threading.Barrier(2, timeout=10)
    world.graph.before_page = lambda folder, url: both.wait() if url is None else None

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN both folders were stored and the round completed (a sequential walk would break
    # the barrier and fail the job)
    assert stats is not None
    assert stats.complete is True
    assert sorted(world.emails.saved) == ["in-1", "out-1"]


def test_run_with_one_free_slot_walks_folders_one_after_another():
    """With three slots held by other jobs, the job runs with one and reads folders in order."""
    # GIVEN three folders and only one free slot
    world = _world(_connection(folders=(INBOX, SENT, ARCHIVE)))
    for folder in (INBOX, SENT, ARCHIVE):
        world.graph.chain(folder.folder_id, None, [[_mail(f"{folder.folder_id}-1")]])
    _hold_slots(world, 3)

    # WHEN the job runs
    world.service.run(JOB)

    # THEN the folders were read one after another, in the connection's order
    assert [c.folder_id for c in world.graph.calls] == ["inbox-id", "sent-id", "archive-id"]


def test_run_budget_continuation_names_the_folders_finished_this_round():
    """A job cut by its page budget re-queues itself listing the folders it finished."""
    # GIVEN one free slot (folders in order), a budget of two pages, Inbox of one page and
    # Sent Items of three
    world = _world(_connection(folders=(INBOX, SENT)), page_budget=2)
    world.graph.chain(INBOX.folder_id, None, [[_mail("in-1")]])
    world.graph.chain(SENT.folder_id, None, [[_mail(f"out-{n}")] for n in range(3)])
    _hold_slots(world, 3)

    # WHEN the job runs
    stats = world.service.run(JOB)

    # THEN it stopped after two pages and its continuation says Inbox is done
    assert stats is not None
    assert stats.complete is False
    assert world.queue.sent == [SentJob(MAIL_SYNC_QUEUE, {**JOB, "done": ["inbox-id"]}, 0)]
    assert world.connections.rounds == []


def test_run_continuation_does_not_read_finished_folders_and_completes_the_round():
    """A continuation skips the folders its round finished; the round then completes."""
    # GIVEN Inbox finished earlier in the round, and Sent Items with a page left
    world = _world(_connection(folders=(INBOX, SENT)))
    world.graph.chain(SENT.folder_id, None, [[_mail("out-9")]])

    # WHEN the continuation runs
    stats = world.service.run({**JOB, "done": ["inbox-id"]})

    # THEN only Sent Items was read, and the round is recorded as complete
    assert [c.folder_id for c in world.graph.calls] == [SENT.folder_id]
    assert stats is not None
    assert stats.complete is True
    assert len(world.connections.rounds) == 1
    assert world.queue.sent == []


def test_run_continuation_cut_again_keeps_earlier_finished_folders():
    """A second cut of the same round lists the folders every job before it finished too."""
    # GIVEN Inbox finished by an earlier job, Sent Items finishing now, Archive too long
    world = _world(_connection(folders=(INBOX, SENT, ARCHIVE)), page_budget=2)
    world.graph.chain(SENT.folder_id, None, [[_mail("out-1")]])
    world.graph.chain(ARCHIVE.folder_id, None, [[_mail(f"a-{n}")] for n in range(4)])
    _hold_slots(world, 3)

    # WHEN the continuation runs out of budget again
    world.service.run({**JOB, "done": ["inbox-id"]})

    # THEN its own continuation lists both finished folders
    assert world.queue.sent[-1].job["done"] == ["inbox-id", "sent-id"]


def test_run_continuation_after_a_reselection_carries_only_chosen_folders():
    """Folders finished under an old selection are left out, so the continuation parses."""
    # GIVEN a continuation naming 30 folders the user has since unselected, a new selection of
    # 50 folders of one page each, and a budget that lets 25 of them finish in this job
    old = [f"old-{n}" for n in range(30)]
    chosen = tuple(Folder(f"new-{n}", f"New {n}") for n in range(MAX_DONE_FOLDERS))
    world = _world(_connection(folders=chosen), page_budget=25)
    for folder in chosen:
        world.graph.chain(folder.folder_id, None, [[_mail(f"{folder.folder_id}-m")]])
    _hold_slots(world, 3)

    # WHEN the continuation runs out of budget
    world.service.run({**JOB, "done": old})

    # THEN its own continuation lists only the 25 chosen folders it finished, and the next
    # delivery accepts it
    [sent] = world.queue.sent
    assert sent.job["done"] == [f"new-{n}" for n in range(25)]
    assert MailJob.parse(sent.job).done == tuple(sent.job["done"])


def test_continued_folders_keeps_what_a_job_may_carry():
    """A done list is cut to the limit (the last finished kept) and loses ids a job refuses."""
    # GIVEN 60 finished folders, one repeated and one with an id too long to carry
    finished = [f"f-{n}" for n in range(60)] + ["f-59", "x" * (MAX_FOLDER_ID + 1)]

    # WHEN the continuation's done list is made from them
    done = continued_folders(finished)

    # THEN it holds the 50 finished last, once each, and parses as a job field
    assert done == tuple(f"f-{n}" for n in range(10, 60))
    assert MailJob.parse({**JOB, "done": list(done)}).done == done


def test_run_one_folder_throttled_stops_the_others_and_requeues_once(monkeypatch):
    """A folder throttled for long ends the whole job: one re-queue after Retry-After, no round."""
    # GIVEN Sent Items throttled for two minutes on its second page, and a long Inbox whose
    # pages after the first are answered only once the walk has been stopped
    world = _world(_connection(folders=(INBOX, SENT)))
    world.graph.chain(INBOX.folder_id, None, [[_mail(f"in-{n}")] for n in range(50)])
    world.graph.links[(SENT.folder_id, None)] = DeltaPage([_mail("out-1")], "sent-next", None)
    world.graph.links[(SENT.folder_id, "sent-next")] = ThrottledError("429", retry_after_s=120)
    stopped = threading.Event()
    stop = PageBudget.stop

    def stop_and_tell(budget: PageBudget) -> None:
        stop(budget)
        stopped.set()

    monkeypatch.setattr(PageBudget, "stop", stop_and_tell)
    world.graph.before_page = lambda folder, url: (
        stopped.wait(10) if folder == INBOX.folder_id and url else None
    )

    # WHEN the job runs
    result = world.service.run(JOB)

    # THEN the job surfaced the throttling as the sequential walk did, and Inbox stopped at the
    # page it had stored: its cursor names the next one, which the next job reads
    assert result is None
    assert world.queue.sent == [SentJob(MAIL_SYNC_QUEUE, JOB, 121)]
    assert world.connections.rounds == []
    # (Inbox's first page may come before or after the stop: stored and checkpointed, or not)
    inbox = [item for item in world.emails.saved if item.startswith("in-")]
    assert inbox in ([], ["in-0"])
    assert "out-1" in world.emails.saved
    cursor = world.cursor()
    if inbox:
        assert cursor is not None
        assert cursor["nextLink"] == "inbox-id-from-None-next-1"
    else:
        assert cursor is None


@pytest.mark.parametrize(
    "done",
    ["inbox-id", [7], [""], ["x" * 513], ["bad\nid"], ["é"], ["f"] * 51],
    ids=["not-a-list", "int", "empty", "too-long", "control", "non-ascii", "too-many"],
)
def test_mail_job_parse_rejects_a_bad_done_list(done):
    """A done field that is not a short list of printable folder ids raises InvalidJobError."""
    # GIVEN a job whose done field the product never writes

    # WHEN it is parsed, THEN it is refused
    with pytest.raises(InvalidJobError, match="done"):
        MailJob.parse({**JOB, "done": done})


def test_mail_job_with_done_round_trips_through_message():
    """A continuation job keeps its finished folders through parse and message."""
    # GIVEN a continuation message
    message = {**JOB, "done": ["inbox-id", "sent-id"]}

    # WHEN it is parsed and written back
    job = MailJob.parse(message)

    # THEN the folders survive, and a job without any writes no done field
    assert job.done == ("inbox-id", "sent-id")
    assert job.as_message() == message
    assert MailJob.parse(JOB).as_message() == JOB


def test_run_without_chosen_folders_looks_up_the_defaults_and_syncs_them():
    """A connection consent left without folders gets Inbox and Sent Items, and syncs them."""
    # GIVEN a connection stored without folders, and mail in Inbox and Sent Items
    world = _world(_connection(folders=()))
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")]])
    world.graph.chain(SENT.folder_id, None, [[_mail("m2")]])

    # WHEN its job runs
    stats = world.service.run(JOB)

    # THEN the default folders are chosen for it and both are synced in this round
    assert world.connections.connection is not None
    assert world.connections.connection.folders == (INBOX, SENT)
    assert sorted(world.emails.saved) == ["m1", "m2"]
    assert stats is not None
    assert stats.complete


def test_run_without_chosen_folders_retries_when_the_lookup_fails():
    """When Graph fails the lookup of the default folders, the job fails and nothing is recorded."""
    # GIVEN a connection without folders, and Graph failing the folder lookup
    world = _world(_connection(folders=()))
    world.graph.folder_error = TransientError("Graph answered 503")

    # WHEN its job runs THEN it raises for the queue to retry, and records no empty round
    with pytest.raises(TransientError):
        world.service.run(JOB)
    assert world.connections.rounds == []


def _ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")


def test_run_first_round_notes_its_floor_and_when_it_ended():
    """A round begun without a link keeps its floor, and its start once it reaches the end."""
    # GIVEN a folder never synced
    world = _world()
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")], [_mail("m2")]])

    # WHEN the job runs
    before = datetime.now(UTC).replace(microsecond=0)
    world.service.run(JOB)

    # THEN the cursor keeps the round's floor and start, and marks the round as ended
    cursor = world.cursor()
    assert cursor is not None
    since = world.graph.calls[0].since
    assert since is not None
    assert datetime.fromisoformat(cursor["roundSince"]) == since.replace(microsecond=0)
    assert datetime.fromisoformat(cursor["roundStartedAt"]) >= before
    assert cursor["syncedThrough"] == cursor["roundStartedAt"]


def test_run_reset_starts_no_later_than_the_last_ended_round():
    """A reset after a gap longer than the backfill window reads back to the last ended round."""
    # GIVEN a folder whose last round ended 40 days ago (the backfill window is 30 days)
    world = _world()
    world.store_cursor(delta_link="stale-delta")
    world.tables.upsert(CURSORS, {**_cursor_row(), "syncedThrough": _ago(40)})
    world.graph.links[(INBOX.folder_id, "stale-delta")] = DeltaCursorExpiredError("410")
    world.graph.chain(INBOX.folder_id, None, [[_mail("m1")]])

    # WHEN the job runs
    world.service.run(JOB)

    # THEN the fresh round starts an hour before that round, not at the backfill start
    since = world.graph.calls[1].since
    assert since is not None
    expected = datetime.fromisoformat(_ago(40)) - timedelta(hours=1)
    assert abs(since - expected) < timedelta(seconds=5)
    assert world.emails.saved == ["m1"]


def test_run_reset_never_starts_before_the_purge_watermark():
    """However old the last ended round, a reset starts no earlier than the user's purge."""
    # GIVEN a purge 10 days ago and a folder whose last round ended 40 days ago
    purged = _ago(10)
    world = _world(replace(_connection(), purged_before=purged))
    world.store_cursor(delta_link="stale-delta")
    world.tables.upsert(CURSORS, {**_cursor_row(), "syncedThrough": _ago(40)})
    world.graph.links[(INBOX.folder_id, "stale-delta")] = DeltaCursorExpiredError("410")
    world.graph.chain(INBOX.folder_id, None, [[]])

    # WHEN the job runs
    world.service.run(JOB)

    # THEN the fresh round starts at the purge
    assert world.graph.calls[1].since == datetime.fromisoformat(purged)


def test_run_reset_that_backs_off_keeps_what_the_next_round_needs():
    """A second expiry leaves the cursor without links but with its rounds' instants."""
    # GIVEN a folder whose last round ended 3 days ago, and Graph refusing every request
    world = _world()
    ended = _ago(3)
    world.store_cursor(delta_link="stale-delta")
    world.tables.upsert(CURSORS, {**_cursor_row(), "syncedThrough": ended})
    world.graph.links[(INBOX.folder_id, "stale-delta")] = DeltaCursorExpiredError("410")
    world.graph.links[(INBOX.folder_id, None)] = DeltaCursorExpiredError("410")

    # WHEN the job runs and backs off
    assert world.service.run(JOB) is None

    # THEN the cursor forgot its links only, so the re-queued job starts back there
    cursor = world.cursor()
    assert cursor is not None
    assert (cursor["nextLink"], cursor["deltaLink"], cursor["syncedThrough"]) == ("", "", ended)


def _cursor_row() -> dict[str, Any]:
    partition, row = _cursor_key()
    return {"PartitionKey": partition, "RowKey": row}
