"""Unit tests of the simulator's mailbox model, ids and message rendering."""

from __future__ import annotations

import pytest

from devstack.simulator import ids
from devstack.simulator.mailbox import Mailbox, StoredMessage, Tombstone
from devstack.simulator.messages import render_message

NOW = "2024-05-01T10:00:00Z"


def test_ids_exchange_ids_contain_base64_specials():
    """Folder and message ids are standard base64 with /, + and = in them."""
    # GIVEN / WHEN new ids are made
    made = [ids.folder_id(), ids.rest_message_id(), ids.immutable_message_id()]

    # THEN each has the three characters and a real-looking prefix
    for value in made:
        assert {"/", "+", "="} <= set(value)
    assert made[0].startswith("AQMkA")
    assert made[1].startswith("AAMkA")
    assert made[2].startswith("AAkAL")


def test_mailbox_new_has_well_known_folders():
    """A new mailbox has the six well-known folders under a root."""
    # GIVEN / WHEN a mailbox is created
    mailbox = Mailbox()

    # THEN its top-level folders are the well-known ones, resolvable by any name form
    names = [f.display_name for f in mailbox.child_folders(mailbox.root.id)]
    assert names == ["Inbox", "Sent Items", "Drafts", "Deleted Items", "Archive", "Junk Email"]
    inbox = mailbox.resolve_folder("inbox")
    assert mailbox.resolve_folder("Inbox") is inbox
    assert mailbox.resolve_folder(inbox.id) is inbox
    assert mailbox.resolve_folder("Junk Email").well_known == "junkemail"
    assert mailbox.graph_folder("Sent Items") is None


def test_mailbox_unknown_folder_raises():
    """Resolving a folder that does not exist raises KeyError."""
    # GIVEN / WHEN / THEN
    with pytest.raises(KeyError):
        Mailbox().resolve_folder("nowhere")


def test_mailbox_add_keeps_caller_fields_and_assigns_server_fields():
    """add_message keeps the caller's properties and ignores server-owned ones."""
    # GIVEN a message dict that tries to set its own id
    mailbox = Mailbox()
    data = {"id": "mine", "subject": "Hi", "internetMessageId": "<a@b>", "isRead": True}

    # WHEN it is added
    stored = mailbox.add_message("inbox", data, NOW)

    # THEN the server owns id and folder, the rest is kept
    assert stored.immutable_id != "mine"
    assert "id" not in stored.data
    assert stored.data["internetMessageId"] == "<a@b>"
    assert stored.folder_id == mailbox.resolve_folder("inbox").id
    assert mailbox.counts(stored.folder_id) == (1, 0)


def test_mailbox_changes_window_orders_messages_and_tombstones():
    """changes() returns live messages and tombstones of a folder inside a sequence window."""
    # GIVEN two messages, one of which is then moved away
    mailbox = Mailbox()
    first = mailbox.add_message("inbox", {"subject": "1"}, NOW)
    mark = mailbox.high_water
    second = mailbox.add_message("inbox", {"subject": "2"}, NOW)
    mailbox.move_message(first.immutable_id, "archive", NOW)

    # WHEN the inbox changes after the first add are listed
    inbox = mailbox.resolve_folder("inbox").id
    changes = mailbox.changes(inbox, mark, mailbox.high_water)

    # THEN the second message and the first one's tombstone come, in order
    assert [type(c) for c in changes] == [StoredMessage, Tombstone]
    assert changes[0] is second
    assert isinstance(changes[1], Tombstone)
    assert changes[1].immutable_id == first.immutable_id


def test_mailbox_move_changes_rest_id_not_immutable_id():
    """Moving a message gives it a new REST id and keeps its immutable id."""
    # GIVEN a message
    mailbox = Mailbox()
    stored = mailbox.add_message("inbox", {"subject": "x"}, NOW)
    old_rest = stored.rest_id

    # WHEN it moves
    mailbox.move_message(stored.immutable_id, "archive", NOW)

    # THEN only the immutable id and the new REST id find it
    assert mailbox.find_message(stored.immutable_id) is stored
    assert mailbox.find_message(stored.rest_id) is stored
    assert mailbox.find_message(old_rest) is None


def test_mailbox_update_bumps_change_key():
    """An update changes the change key and the modification time."""
    # GIVEN a message
    mailbox = Mailbox()
    stored = mailbox.add_message("inbox", {"isRead": False}, NOW)
    key = stored.change_key

    # WHEN it is marked read
    mailbox.update_message(stored.immutable_id, {"isRead": True}, "2024-05-02T00:00:00Z")

    # THEN it carries a new change key and counts as read
    assert stored.change_key != key
    assert stored.modified == "2024-05-02T00:00:00Z"
    assert mailbox.counts(stored.folder_id) == (1, 0)


def test_render_message_select_and_id_kind():
    """render_message honours $select and picks the id kind the request asked for."""
    # GIVEN a stored message with headers
    mailbox = Mailbox()
    headers = [{"name": "X-A", "value": "1"}]
    stored = mailbox.add_message("inbox", {"subject": "s", "internetMessageHeaders": headers}, NOW)

    # WHEN it is rendered both ways
    plain = render_message(stored, immutable=False)
    selected = render_message(stored, immutable=True, select=frozenset({"internetMessageHeaders"}))

    # THEN headers appear only when selected, and ids differ by kind
    assert plain["id"] == stored.rest_id
    assert "internetMessageHeaders" not in plain
    assert selected["id"] == stored.immutable_id
    assert selected["internetMessageHeaders"] == headers
    assert "subject" not in selected
