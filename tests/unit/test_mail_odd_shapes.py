"""Unit tests of mail sync over messages whose fields have shapes Graph does not document.

Each field the mail path reads (the decision, the rows, the keys) is given JSON values of other
types; one such message must never block its mailbox, so the rest of its page is stored and the
folder's cursor moves on.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.graph import MESSAGE_FIELDS, DeltaPage
from shared.sync import mail as mail_module
from shared.sync.connections import ACTIVE
from shared.sync.emailrows import EMAILS, HOLDERS, INDEX, ITEMS
from shared.sync.emailrows import INBOX as SHARED_INBOX
from shared.sync.mail import DROP_UNREADABLE, MailSyncService
from shared.sync.store import EmailStore, KeptMessage, UnreadableMessageError
from tests.unit.fakes import FakeBlobs, FakeQueue, FakeTables
from tests.unit.test_mail_sync import (
    INBOX,
    JOB,
    TENANT,
    USER,
    FakeConnections,
    FakeDirectory,
    FakeGraph,
    _connection,
    _mail,
)

READ_FIELDS = (*MESSAGE_FIELDS, "replyTo")
"""Every field of a Graph message the mail path reads: those it asks Graph for, and replyTo."""
ODD_VALUES = (
    None,
    "",
    0,
    1.5,
    True,
    "text",
    [],
    ["a"],
    [None],
    [{}],
    {},
    {"emailAddress": None},
    {"emailAddress": {"address": 5, "name": ["x"]}},
    {"content": {"nested": 1}, "contentType": 7},
    [{"name": None, "value": None}, {"name": "References", "value": ["<a@b>"]}],
)
"""JSON values of every type, and objects and lists of the wrong inner shape."""
TABLE_TYPES = (str, int, float, bool)
PROPERTY_TABLES = (EMAILS, HOLDERS, ITEMS, INDEX, SHARED_INBOX)


def _odd(field: str, value: Any) -> dict[str, Any]:
    message = _mail("odd-1")
    message[field] = value
    return message


def _world() -> tuple[MailSyncService, FakeGraph, FakeTables]:
    """A mail sync service storing through a real EmailStore over in-memory tables."""
    tables, graph = FakeTables(), FakeGraph()
    service = MailSyncService(
        connections=FakeConnections(_connection(ACTIVE)),  # type: ignore[arg-type]
        graph=graph,  # type: ignore[arg-type]
        directory=FakeDirectory(),  # type: ignore[arg-type]
        emails=EmailStore(tables, FakeBlobs()),  # type: ignore[arg-type]
        queue=FakeQueue(),  # type: ignore[arg-type]
        tables=tables,  # type: ignore[arg-type]
    )
    return service, graph, tables


def _item_ids(tables: FakeTables) -> set[str]:
    return {str(row["itemId"]) for row in tables.rows(ITEMS)}


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
@pytest.mark.parametrize("field", READ_FIELDS)
def test_sync_page_with_an_odd_field_stores_the_rest_and_moves_the_cursor(field, value):
    """A message with one field of another shape is stored or dropped; its page goes on."""
    # GIVEN a page with the odd message between two customer messages
    service, graph, tables = _world()
    page = [_mail("good-1"), _odd(field, value), _mail("good-2")]
    graph.links[(INBOX.folder_id, None)] = DeltaPage(page, None, "delta-1")

    # WHEN the job runs
    stats = service.run(JOB)

    # THEN the round completed, both good messages are stored, the cursor moved to the delta
    # link, and every stored property has a type a table holds
    assert stats is not None
    assert stats.complete is True
    assert {"good-1", "good-2"} <= _item_ids(tables)
    assert stats.kept + sum(stats.dropped.values()) == 3
    [cursor] = tables.rows("cursors")
    assert cursor["deltaLink"] == "delta-1"
    for table in PROPERTY_TABLES:
        for row in tables.rows(table):
            assert all(isinstance(v, TABLE_TYPES) for v in row.values() if v is not None), row


def test_sync_page_entries_without_an_id_or_not_objects_are_counted_as_unreadable():
    """Entries no row can be keyed by are dropped and counted; the page's messages are kept."""
    # GIVEN a page whose adapter left out one entry that was not an object, with one message
    # without an id and one whose id is a number
    service, graph, tables = _world()
    no_id = {k: v for k, v in _mail("x").items() if k != "id"}
    page = [_mail("good-1"), no_id, {**_mail("y"), "id": 7}]
    graph.links[(INBOX.folder_id, None)] = DeltaPage(page, None, "delta-1", unreadable=1)

    # WHEN the job runs
    stats = service.run(JOB)

    # THEN the good message is stored, three entries are counted unreadable, the round ends
    assert stats is not None
    assert _item_ids(tables) == {"good-1"}
    assert stats.dropped[DROP_UNREADABLE] == 3
    assert stats.complete is True
    assert stats.as_record()["dropped"] == {DROP_UNREADABLE: 3}


@pytest.mark.parametrize("value", [None, 7, "", ["a"], {"x": 1}], ids=repr)
def test_save_page_refuses_a_message_without_a_string_id_and_stores_the_rest(value):
    """A kept message without a usable id is refused as unreadable, never a KeyError."""
    # GIVEN a page of two kept messages, the first with no usable id
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    bad = {**_mail("bad"), "id": value}
    kept = [KeptMessage(bad, (), frozenset({"acme"})), KeptMessage(_mail("ok"), (), frozenset())]

    # WHEN the page is saved
    outcomes = store.save_page(tenant_id=TENANT, user_id=USER, connection="c", kept=kept)

    # THEN the first is refused as unreadable and the second stored
    assert isinstance(outcomes[0], UnreadableMessageError)
    assert outcomes[1] is True
    assert _item_ids(tables) == {"ok"}


def test_sync_message_the_decision_cannot_read_is_dropped_as_unreadable(monkeypatch):
    """A message whose decision fails on its shape is dropped and counted; the page goes on."""
    # GIVEN a decision that fails on one message of a page, as on a shape it did not expect
    service, graph, tables = _world()
    real = mail_module.decide

    def fragile(message: Any, *args: Any, **kwargs: Any) -> Any:
        if message["id"] == "odd-1":
            raise TypeError("unexpected shape")
        return real(message, *args, **kwargs)

    monkeypatch.setattr(mail_module, "decide", fragile)
    page = [_mail("good-1"), _mail("odd-1"), _mail("good-2")]
    graph.links[(INBOX.folder_id, None)] = DeltaPage(page, None, "delta-1")

    # WHEN the job runs
    stats = service.run(JOB)

    # THEN the other messages are stored, the odd one counted unreadable, the cursor moved
    assert stats is not None
    assert _item_ids(tables) == {"good-1", "good-2"}
    assert stats.dropped == {DROP_UNREADABLE: 1}
    [cursor] = tables.rows("cursors")
    assert cursor["deltaLink"] == "delta-1"
