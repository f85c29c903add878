"""BR-15 on Azurite: two workers on one connection never let an older cursor replace a newer one.

The mailbox gate normally keeps a connection to one job; these tests play the case it cannot
rule out (a lease that lapsed under a stalled worker), with two mail sync workers writing the
same folder's cursor in the ``cursors`` table of the stack's Azurite. Graph is scripted so the
second worker's writes land exactly between the first worker's read and write.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import LocalStack
from shared.adapters.graph import DeltaPage
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.errors import DeltaCursorExpiredError
from shared.sync.connections import MAIL, Connection, Folder
from shared.sync.connectionstore import ConnectionStore
from shared.sync.folderwalk import PageBudget
from shared.sync.jobs import CursorTakenError
from shared.sync.mail import CURSORS, MailSyncService, _Round
from shared.sync.removals import PendingRemovals
from shared.sync.store import EmailStore

pytestmark = pytest.mark.stack

FOLDER = Folder("inbox-folder-id", "Inbox")


class ScriptedGraph:
    """Answers delta requests from a script; ``before`` runs just before the first answer."""

    def __init__(self, *answers: DeltaPage | Exception) -> None:
        self.answers = list(answers)
        self.before: Callable[[], object] | None = None
        self.resumed_from: list[str | None] = []

    def delta_pages(
        self, token: str, folder_id: str, *, resume_url: str | None, since: datetime | None
    ) -> Iterator[DeltaPage]:
        self.resumed_from.append(resume_url)
        while self.answers:
            if self.before is not None:
                hook, self.before = self.before, None
                hook()
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            yield answer
            if answer.delta_link:
                return


def final(link: str) -> DeltaPage:
    """A last, empty page of a round, ending on ``link``."""
    return DeltaPage(items=[], next_link=None, delta_link=link)


def worker(tables: TableEntityStore, graph: ScriptedGraph) -> MailSyncService:
    """A mail sync worker on Azurite's tables; only its cursor handling is exercised.

    Its connection store reads the (absent) connection row between pages, as a real worker does
    to notice a revocation; nothing else of it is used.
    """
    unused = cast(Any, None)
    return MailSyncService(
        connections=ConnectionStore(tables, unused, unused),
        graph=cast(Any, graph),
        directory=unused,
        # A round begun without a link reads the folder's stored items at its end.
        emails=EmailStore(tables, unused),
        queue=unused,
        tables=tables,
    )


def round_for(connection: Connection) -> _Round:
    """What a job works with; empty pages never reach matching or rules."""
    unused = cast(Any, None)
    return _Round(
        connection=connection,
        token="token",
        index=unused,
        backfill_start=datetime.now(UTC),
        pending=PendingRemovals(set()),
        rules=unused,
        budget=PageBudget(200),
    )


@pytest.fixture
def tables(stack: LocalStack) -> TableEntityStore:
    """The product's table adapter on the stack's Azurite."""
    service = TableServiceClient.from_connection_string(stack.env["AzureWebJobsStorage"])
    store = TableEntityStore(service)
    store.ensure_tables()
    return store


@pytest.fixture
def connection() -> Connection:
    """A connection of its own, so its cursor row is this test's alone."""
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    return Connection(tenant, user, MAIL, "active", "", (FOLDER,), "", ())


def stored_link(tables: TableEntityStore, connection: Connection) -> str | None:
    """The folder's deltaLink as Azurite holds it, or None without a cursor."""
    row = tables.get(CURSORS, connection.key, table_key(FOLDER.folder_id))
    return None if row is None else str(row["deltaLink"])


def seed(tables: TableEntityStore, connection: Connection, link: str) -> None:
    """Store a finished round's cursor for the folder."""
    row = {
        "PartitionKey": connection.key,
        "RowKey": table_key(FOLDER.folder_id),
        "folderId": FOLDER.folder_id,
        "nextLink": "",
        "deltaLink": link,
    }
    tables.upsert(CURSORS, row, replace=True)


def test_slower_worker_cannot_overwrite_the_cursor_a_faster_one_moved(
    tables: TableEntityStore, connection: Connection
) -> None:
    """Both read dt-5; the first to write wins, the other gets 412 and stops."""
    # GIVEN a stored deltaLink dt-5, and worker B whose Graph answers only after worker A,
    # started from the same dt-5, has finished its round at dt-6a
    seed(tables, connection, "dt-5")
    fast = worker(tables, ScriptedGraph(final("dt-6a")))
    slow_graph = ScriptedGraph(final("dt-6b"))
    slow = worker(tables, slow_graph)
    slow_graph.before = lambda: fast._sync_folder(round_for(connection), FOLDER)

    # WHEN worker B tries to store its page
    with pytest.raises(CursorTakenError):
        slow._sync_folder(round_for(connection), FOLDER)

    # THEN both started from dt-5, and the cursor is A's: B's write was refused by its ETag
    assert slow_graph.resumed_from == ["dt-5"]
    assert stored_link(tables, connection) == "dt-6a"


def test_two_first_rounds_create_the_cursor_once(
    tables: TableEntityStore, connection: Connection
) -> None:
    """With no cursor yet, the second worker's insert conflicts instead of replacing."""
    # GIVEN no cursor, and worker B whose first page arrives after worker A stored its round
    fast = worker(tables, ScriptedGraph(final("dt-1a")))
    slow_graph = ScriptedGraph(final("dt-1b"))
    slow = worker(tables, slow_graph)
    slow_graph.before = lambda: fast._sync_folder(round_for(connection), FOLDER)

    # WHEN worker B tries to store its page
    with pytest.raises(CursorTakenError):
        slow._sync_folder(round_for(connection), FOLDER)

    # THEN A's cursor stays
    assert stored_link(tables, connection) == "dt-1a"


def test_stale_expiry_does_not_reset_a_cursor_another_worker_moved(
    tables: TableEntityStore, connection: Connection
) -> None:
    """B's dt-5 is refused (410) after A moved on to dt-6a: B stops rather than wipe A's cursor."""
    # GIVEN a stored dt-5, and worker B whose Graph refuses dt-5 after worker A moved on from it
    seed(tables, connection, "dt-5")
    fast = worker(tables, ScriptedGraph(final("dt-6a")))
    expired = DeltaCursorExpiredError("Graph refused the delta link")
    slow_graph = ScriptedGraph(expired, final("dt-fresh"))
    slow = worker(tables, slow_graph)
    slow_graph.before = lambda: fast._sync_folder(round_for(connection), FOLDER)

    # WHEN worker B handles the refusal
    with pytest.raises(CursorTakenError):
        slow._sync_folder(round_for(connection), FOLDER)

    # THEN A's newer cursor is neither deleted nor replaced by B's resync from scratch
    assert stored_link(tables, connection) == "dt-6a"
    assert slow_graph.resumed_from == ["dt-5"]


def test_expiry_without_a_race_still_resets_and_resyncs(
    tables: TableEntityStore, connection: Connection
) -> None:
    """Alone on the connection, a refused dt-5 resets the folder and a fresh round stores."""
    # GIVEN a stored dt-5 that Graph refuses once
    seed(tables, connection, "dt-5")
    graph = ScriptedGraph(DeltaCursorExpiredError("gone"), final("dt-fresh"))

    # WHEN the worker syncs the folder
    done, _ = worker(tables, graph)._sync_folder(round_for(connection), FOLDER)

    # THEN it resynced from scratch and stored the fresh round's link
    assert done is True
    assert graph.resumed_from == ["dt-5", None]
    assert stored_link(tables, connection) == "dt-fresh"
