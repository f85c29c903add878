"""Unit tests for shared.sync.removals: noting removals, settling and watching them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import NotFoundError
from shared.sync.connections import ACTIVE, MAIL, Connection, Folder
from shared.sync.removals import PENDING, WATCH_PER_ROUND, RemovalLedger
from tests.unit.fakes import FakeTables

CONNECTION = Connection(
    tenant_id="tenant-1",
    user_id="user-1",
    kind=MAIL,
    state=ACTIVE,
    upn="alice@vendor.example",
    folders=(Folder("inbox-id", "Inbox"), Folder("sent-id", "Sent Items")),
    home_account_id="home-1",
    scopes=("Mail.Read",),
)


class FakeEmails:
    """EmailStore stand-in: which items are stored, and what resolving did to them."""

    def __init__(self, stored: set[str]) -> None:
        self.stored = stored
        self.moved: list[tuple[str, str]] = []
        self.unlinked: list[str] = []
        self.in_folder: list[dict[str, Any]] = []

    def item(self, connection: str, item_id: str) -> dict[str, Any] | None:
        return {"emailKey": "k"} if item_id in self.stored else None

    def move_item(self, tenant_id: str, connection: str, item_id: str, folder_id: str) -> None:
        self.moved.append((item_id, folder_id))

    def unlink(self, *, item_id: str, **_: Any) -> bool:
        self.unlinked.append(item_id)
        self.stored.discard(item_id)
        return True

    def folder_items(self, connection: str, folder_id: str) -> list[dict[str, Any]]:
        return self.in_folder


class FakeGraph:
    """GraphMailClient stand-in: where each message is now, or gone."""

    def __init__(self, where: dict[str, str]) -> None:
        self.where = where

    def get_message(self, token: str, message_id: str) -> dict[str, Any]:
        if message_id not in self.where:
            raise NotFoundError(message_id)
        return {"id": message_id, "parentFolderId": self.where[message_id]}


def test_notes_from_two_folder_threads_keep_the_table_and_the_set_in_step():
    """Removed and present notes racing for the same ids leave the rows matching the set."""
    # GIVEN a ledger and 200 ids seen removed in one folder and present in another, at once
    tables = FakeTables()
    ledger = RemovalLedger(tables, FakeEmails(set()), FakeGraph({}))  # type: ignore[arg-type]
    pending = ledger.pending(CONNECTION)
    ids = [f"m{n}" for n in range(200)]
    start = threading.Barrier(2)

    def removed() -> None:
        start.wait()
        for item_id in ids:
            ledger.note_removed(CONNECTION, item_id, pending)

    def present() -> None:
        start.wait()
        for item_id in ids:
            ledger.note_present(CONNECTION, item_id, pending)

    # WHEN both folder threads note them
    threads = [threading.Thread(target=removed), threading.Thread(target=present)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN every id still noted has its row and every row is noted: resolving checks them all
    rows = {row["itemId"] for row in tables.rows(PENDING)}
    assert rows == pending.ids
    assert ledger.pending(CONNECTION).ids == pending.ids


def test_a_move_seen_present_before_removed_resolves_to_the_new_folder():
    """A move whose new folder was read first is still settled by the GET: one record, moved."""
    # GIVEN m1 stored, seen present in Sent Items (read first), then removed from Inbox
    tables = FakeTables()
    emails = FakeEmails({"m1"})
    ledger = RemovalLedger(tables, emails, FakeGraph({"m1": "sent-id"}))  # type: ignore[arg-type]
    pending = ledger.pending(CONNECTION)
    ledger.note_present(CONNECTION, "m1", pending)
    ledger.note_removed(CONNECTION, "m1", pending)

    # WHEN the round's removals are resolved
    result = ledger.resolve(CONNECTION, "token")

    # THEN the message was kept and recorded in its new folder, nothing unlinked, nothing left
    assert (result.moved, result.unlinked) == (1, 0)
    assert emails.moved == [("m1", "sent-id")]
    assert emails.unlinked == []
    assert tables.rows(PENDING) == []


def test_a_message_moved_to_an_unsynced_folder_is_watched_until_it_is_gone():
    """Moved to Deleted Items it stays stored; once emptied from there, a later round unlinks it."""
    # GIVEN m1 stored and removed from Inbox into Deleted Items, which is not synced
    tables = FakeTables()
    emails, graph = FakeEmails({"m1"}), FakeGraph({"m1": "deleteditems-id"})
    ledger = RemovalLedger(tables, emails, graph)  # type: ignore[arg-type]
    ledger.note_removed(CONNECTION, "m1", ledger.pending(CONNECTION))

    # WHEN a round resolves it, Deleted Items is emptied, and another round resolves
    first = ledger.resolve(CONNECTION, "token")
    del graph.where["m1"]
    second = ledger.resolve(CONNECTION, "token")

    # THEN it was kept and watched first, then unlinked, and nothing is left noted
    assert (first.moved, first.watched, first.unlinked) == (1, 1, 0)
    assert (second.unlinked, second.watched) == (1, 0)
    assert emails.unlinked == ["m1"]
    assert tables.rows(PENDING) == []


def test_a_watched_message_moved_back_into_a_synced_folder_is_no_longer_watched():
    """Seen present again in a synced folder, a watched message's note is cancelled."""
    # GIVEN m1 watched in an unsynced folder
    tables = FakeTables()
    ledger = RemovalLedger(tables, FakeEmails({"m1"}), FakeGraph({"m1": "archive-id"}))  # type: ignore[arg-type]
    ledger.note_removed(CONNECTION, "m1", ledger.pending(CONNECTION))
    ledger.resolve(CONNECTION, "token")

    # WHEN the next job sees it present in Inbox
    ledger.note_present(CONNECTION, "m1", ledger.pending(CONNECTION))

    # THEN nothing is noted any more
    assert tables.rows(PENDING) == []


def test_a_round_looks_again_at_most_so_many_watched_messages_the_oldest_first():
    """Watched messages are checked a bounded number per round, those checked longest ago first."""
    # GIVEN more watched messages than one round looks at, all still in Deleted Items
    tables = FakeTables()
    ids = [f"m{number:03}" for number in range(WATCH_PER_ROUND + 5)]
    graph = FakeGraph(dict.fromkeys(ids, "deleteditems-id"))
    ledger = RemovalLedger(tables, FakeEmails(set(ids)), graph)  # type: ignore[arg-type]
    pending = ledger.pending(CONNECTION)
    for item_id in ids:
        ledger.note_removed(CONNECTION, item_id, pending)
    ledger.resolve(CONNECTION, "token")

    # WHEN the next round resolves
    again = ledger.resolve(CONNECTION, "token")

    # THEN it looked at the cap, and every message is still watched
    assert again.watched == WATCH_PER_ROUND
    assert len(tables.rows(PENDING)) == len(ids)


def test_note_unseen_notes_what_a_full_round_did_not_save_again():
    """Items saved before the round began and received since its floor are noted as removed."""
    # GIVEN a round that began now with a floor a day back, and four stored items of the folder
    now = datetime.now(UTC)
    since = now - timedelta(days=1)
    emails = FakeEmails(set())

    def row(item_id: str, saved: datetime | None, received: datetime | None) -> dict[str, Any]:
        found: dict[str, Any] = {"itemId": item_id}
        if saved:
            found["savedAt"] = saved.isoformat()
        if received:
            found["receivedAt"] = received.isoformat()
        return found

    emails.in_folder = [
        row("gone", now - timedelta(hours=2), now - timedelta(hours=3)),
        row("seen", now + timedelta(seconds=1), now - timedelta(hours=3)),
        row("older", now - timedelta(days=3), now - timedelta(days=2)),
        row("legacy", None, None),
    ]
    tables = FakeTables()
    ledger = RemovalLedger(tables, emails, FakeGraph({}))  # type: ignore[arg-type]

    # WHEN the round's end notes what it did not see
    noted = ledger.note_unseen(
        CONNECTION, "inbox-id", ledger.pending(CONNECTION), started=now, since=since
    )

    # THEN the unseen item in its window and the legacy one are noted, not the others
    assert noted == 2
    assert sorted(r["itemId"] for r in tables.rows(PENDING)) == ["gone", "legacy"]
