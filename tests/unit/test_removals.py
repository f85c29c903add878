"""Unit tests for shared.sync.removals: noting removals from several folder threads at once."""

from __future__ import annotations

import threading
from typing import Any

from shared.errors import NotFoundError
from shared.sync.connections import ACTIVE, MAIL, Connection, Folder
from shared.sync.removals import PENDING, RemovalLedger
from tests.unit.fakes import FakeTables

CONNECTION = Connection(
    tenant_id="tenant-1",
    user_id="user-1",
    kind=MAIL,
    state=ACTIVE,
    upn="alice@vendor.example",
    folders=(Folder("inbox-id", "Inbox"),),
    home_account_id="home-1",
    scopes=("Mail.Read",),
)


class FakeEmails:
    """EmailStore stand-in: which items are stored, and what resolving did to them."""

    def __init__(self, stored: set[str]) -> None:
        self.stored = stored
        self.moved: list[tuple[str, str]] = []
        self.unlinked: list[str] = []

    def item(self, connection: str, item_id: str) -> dict[str, Any] | None:
        return {"emailKey": "k"} if item_id in self.stored else None

    def move_item(self, tenant_id: str, connection: str, item_id: str, folder_id: str) -> None:
        self.moved.append((item_id, folder_id))

    def unlink(self, *, item_id: str, **_: Any) -> bool:
        self.unlinked.append(item_id)
        return True


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
