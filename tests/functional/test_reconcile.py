"""Mail deleted in Outlook leaves the product, also while a cursor was lost or from a bin."""

from __future__ import annotations

import re

import pytest

from devstack.simulator import FaultRule
from tests.functional.conftest import Tenant
from tests.functional.test_delta_reset import two_folder_mailbox
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import connected, last_round, stored_ids

pytestmark = pytest.mark.stack


def test_mail_deleted_while_the_cursor_was_lost_goes_with_the_reset(tenant: Tenant) -> None:
    """The full round after a reset removes what it no longer sees, and keeps the rest once."""
    # GIVEN three stored mails
    upn = connected(tenant, "gus", "Acme", "acme.example")
    mails = [message("a@acme.example", [upn], f"g{i}", days_ago=i + 1) for i in range(3)]
    ids = tenant.stack.sim.load_messages(upn, "inbox", mails)
    tenant.sync()
    assert len(stored_ids(tenant, "Acme")) == 3

    # WHEN one is deleted in Outlook while Graph forgets the mailbox's delta tokens
    tenant.stack.sim.delete_message(upn, ids[0])
    tenant.stack.sim.invalidate_delta_tokens(upn)
    tenant.sync()

    # THEN the reset round unlinked it, and the other two stay once each
    left = stored_ids(tenant, "Acme")
    assert sorted(left) == sorted(m["internetMessageId"] for m in mails[1:])
    state = last_round(tenant, upn)
    assert (state["state"], state["lastError"]) == ("active", None)


def test_mail_moved_between_synced_folders_while_the_cursor_was_lost_stays(
    tenant: Tenant,
) -> None:
    """A reset of the folder a mail left keeps the mail, now recorded in its new folder."""
    # GIVEN Inbox and Archive synced, with three mails in Inbox and two in Archive
    upn, _inbox, _archive = two_folder_mailbox(tenant, "hal")
    tenant.sync()
    before = stored_ids(tenant, "Acme")
    assert len(before) == 5

    # WHEN an Inbox mail moves to Archive while Graph forgets the delta tokens
    moved = str(tenant.stack.sim.messages(upn, "inbox")[0]["id"])
    tenant.stack.sim.move_message(upn, moved, "archive")
    tenant.stack.sim.invalidate_delta_tokens(upn)
    tenant.sync()

    # THEN all five mails are still stored, once each
    assert sorted(stored_ids(tenant, "Acme")) == sorted(before)


def test_mail_binned_then_emptied_from_deleted_items_goes(tenant: Tenant) -> None:
    """Moved to Deleted Items (not synced) it stays; emptied from there, it goes."""
    # GIVEN a stored mail moved to Deleted Items, which the connection does not sync
    upn = connected(tenant, "eve", "Acme", "acme.example")
    mail = message("a@acme.example", [upn], "to be binned")
    (item,) = tenant.stack.sim.load_messages(upn, "inbox", [mail])
    tenant.sync()
    tenant.stack.sim.move_message(upn, item, "deleteditems")
    tenant.sync()
    assert stored_ids(tenant, "Acme") == [mail["internetMessageId"]]

    # WHEN Deleted Items is emptied and the next round runs
    tenant.stack.sim.delete_message(upn, item)
    tenant.sync()

    # THEN the mail is no longer stored
    assert stored_ids(tenant, "Acme") == []


def test_mail_of_a_folder_deleted_in_outlook_goes_and_mail_moved_out_of_it_stays(
    tenant: Tenant,
) -> None:
    """A synced folder Graph answers 404 for: its stored mail is looked up, gone mail goes."""
    # GIVEN Inbox and a Projects folder synced, with two stored customer mails in Projects
    upn = connected(tenant, "fay", "Acme", "acme.example")
    inbox = tenant.stack.sim.folder_id(upn, "inbox")
    projects = tenant.stack.sim.create_folder(upn, "Projects")
    token = tenant.token(upn)
    body = {"folderIds": [inbox, projects]}
    tenant.stack.call("PUT", "me/connections/mail/folders", token, json=body).raise_for_status()
    mails = [message("a@acme.example", [upn], f"p{i}", days_ago=i + 1) for i in range(2)]
    deleted, moved = tenant.stack.sim.load_messages(upn, projects, mails)
    tenant.sync()
    assert len(stored_ids(tenant, "Acme")) == 2

    # WHEN the folder is deleted in Outlook, one mail with it and the other moved to Inbox first
    tenant.stack.sim.move_message(upn, moved, inbox)
    tenant.stack.sim.delete_message(upn, deleted)
    gone = {"error": {"code": "ErrorItemNotFound", "message": "The folder was not found."}}
    rule = FaultRule(
        rf"/mailFolders/{re.escape(projects)}",
        404,
        service="graph",
        user=upn,
        body=gone,
        count=None,
    )
    tenant.stack.sim.add_fault(rule)
    tenant.sync()
    tenant.stack.sim.clear_faults()

    # THEN the deleted mail left the product, the moved one stays, and the folder is reported
    assert len(stored_ids(tenant, "Acme")) == 1
    assert last_round(tenant, upn, token)["lastRound"]["missingFolders"] == 1
