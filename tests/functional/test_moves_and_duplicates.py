"""BR-02: a message listed twice in a delta page, and the folder a moved message is stored in."""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from devstack.simulator import FaultRule
from shared.adapters.tablelimits import table_key
from shared.sync.connections import MAIL, connection_key
from tests.functional.conftest import Tenant
from tests.functional.test_lookalikes import mail_from
from tests.functional.test_mail_sync import message
from tests.functional.test_sync_resilience import connected, last_round, stored_ids

pytestmark = pytest.mark.stack


def table_rows(tenant: Tenant, table: str, where: str, **parameters: str) -> list[dict[str, Any]]:
    """Rows of one of the product's tables, read straight from Azurite."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    found = service.get_table_client(table).query_entities(where, parameters=parameters)
    return [dict(row) for row in found]


def mailbox_item(tenant: Tenant, upn: str, item_id: str) -> dict[str, Any]:
    """What the product stored for one message of a user's mailbox (``mailboxitems``)."""
    partition = connection_key(tenant.tenant_id, tenant.users[upn], MAIL)
    [row] = table_rows(
        tenant,
        "mailboxitems",
        "PartitionKey eq @pk and RowKey eq @rk",
        pk=partition,
        rk=table_key(item_id),
    )
    return row


def choose_folders(tenant: Tenant, upn: str, *folders: str) -> list[str]:
    """Sync exactly these folders of a user; return their ids."""
    ids = [tenant.stack.sim.folder_id(upn, folder) for folder in folders]
    body = {"folderIds": ids}
    chosen = tenant.stack.call("PUT", "me/connections/mail/folders", tenant.token(upn), json=body)
    chosen.raise_for_status()
    return ids


def test_message_listed_twice_in_a_delta_page_is_stored_and_counted_once(tenant: Tenant) -> None:
    """Duplicate ids within a page change nothing: one record, one holder, honest counts."""
    # GIVEN 30 customer mails and 3 internal ones (two pages of 25), and Graph listing every
    # message of a page twice
    upn = connected(tenant, "gus", "Acme", "acme.example")
    mail = [message("a@acme.example", [upn], f"m{i}", days_ago=i / 10 + 0.1) for i in range(30)]
    mail += [message(f"boss@{tenant.domain}", [upn], f"int {i}") for i in range(3)]
    tenant.stack.sim.load_messages(upn, "inbox", mail)
    tenant.stack.sim.repeat_items_in_delta(upn)

    # WHEN a round runs
    tenant.sync()

    # THEN each customer email is stored once with one holder row, and the round counts each
    # message once
    ids = stored_ids(tenant, "Acme")
    assert len(ids) == len(set(ids)) == 30
    holders = table_rows(tenant, "emailholders", "userId eq @user", user=tenant.users[upn])
    assert len(holders) == 30
    state = last_round(tenant, upn)
    assert (state["kept"], state["dropped"]) == (30, 3)
    assert (state["lastRound"]["seen"], state["lastRound"]["storedNew"]) == (33, 30)

    # WHEN a message changes and another round runs with the repeats still on
    (first, *_) = [m["id"] for m in tenant.stack.sim.messages(upn, "inbox")]
    tenant.stack.sim.update_message(upn, first, {"isRead": True})
    tenant.sync()

    # THEN only that message is seen, once, and nothing new is stored
    again = last_round(tenant, upn)["lastRound"]
    assert (again["seen"], again["kept"], again["storedNew"]) == (1, 1, 0)
    assert len(stored_ids(tenant, "Acme")) == 30


def test_message_moved_between_synced_folders_is_stored_with_its_new_folder(
    tenant: Tenant,
) -> None:
    """@removed from Inbox and present in Archive in one cycle: one record, folder Archive."""
    # GIVEN a stored customer email in Inbox, with Inbox and Archive synced
    upn = connected(tenant, "hal", "Acme", "acme.example")
    inbox, archive = choose_folders(tenant, upn, "inbox", "archive")
    mail = message("a@acme.example", [upn], "moving")
    (item,) = tenant.stack.sim.load_messages(upn, "inbox", [mail])
    tenant.sync()
    assert mailbox_item(tenant, upn, item)["folderId"] == inbox

    # WHEN the user archives it and a round runs
    tenant.stack.sim.move_message(upn, item, "archive")
    tenant.sync()

    # THEN the one record now lives in Archive, and nothing was unlinked
    assert stored_ids(tenant, "Acme") == [mail["internetMessageId"]]
    assert mailbox_item(tenant, upn, item)["folderId"] == archive
    round_ = last_round(tenant, upn)["lastRound"]
    assert (round_["removedSeen"], round_["unlinked"], round_["storedNew"]) == (1, 0, 0)


def test_message_moved_to_an_unsynced_folder_records_the_folder_the_get_found(
    tenant: Tenant,
) -> None:
    """An id only @removed is looked up; the message found in Archive keeps its record there."""
    # GIVEN a stored customer email in Inbox, with only Inbox synced
    upn = connected(tenant, "ida", "Acme", "acme.example")
    choose_folders(tenant, upn, "inbox")
    mail = message("a@acme.example", [upn], "archived")
    (item,) = tenant.stack.sim.load_messages(upn, "inbox", [mail])
    tenant.sync()

    # WHEN it moves to Archive, which is not synced, and a round runs
    tenant.stack.sim.move_message(upn, item, "archive")
    tenant.sync()

    # THEN the email stays, and its mailbox item names Archive, the folder the GET answered
    assert stored_ids(tenant, "Acme") == [mail["internetMessageId"]]
    archive = tenant.stack.sim.folder_id(upn, "archive")
    assert mailbox_item(tenant, upn, item)["folderId"] == archive
    assert last_round(tenant, upn)["lastRound"]["unlinked"] == 0


def test_deleting_one_copy_keeps_an_email_another_folder_still_holds(tenant: Tenant) -> None:
    """An email in Sent Items and Inbox (sent to oneself too) stays when one copy is deleted."""
    # GIVEN Ann's proposal to a customer, copied to herself, synced from both folders
    tenant.add_company("Acme", ["acme.example"])
    upn = tenant.add_user("ann")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    proposal = mail_from(upn, "cfo@acme.example", "Proposal")
    proposal["toRecipients"].append({"emailAddress": {"name": "", "address": upn}})
    tenant.stack.sim.add_message(upn, "Sent Items", proposal)
    inbox_copy = tenant.stack.sim.add_message(upn, "Inbox", proposal)
    tenant.sync()
    before = [e["subject"] for e in tenant.company_emails("Acme")]

    # WHEN she deletes the Inbox copy in Outlook and two rounds run
    tenant.stack.sim.delete_message(upn, inbox_copy)
    tenant.sync()
    tenant.sync()

    # THEN the email is still stored, once
    assert before == ["Proposal"]
    assert [e["subject"] for e in tenant.company_emails("Acme")] == ["Proposal"]


def test_folder_deleted_in_outlook_leaves_the_other_folders_syncing(tenant: Tenant) -> None:
    """Graph's 404 for a synced folder skips that folder, says so, and the others sync."""
    # GIVEN a mailbox whose Inbox Graph answers with ErrorItemNotFound, and a customer email in
    # Sent Items
    tenant.add_company("Acme", ["acme.example"])
    upn = tenant.add_user("ann")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    tenant.stack.sim.add_message(upn, "Sent Items", mail_from(upn, "cfo@acme.example", "Quote"))
    inbox = tenant.stack.sim.folder_id(upn, "Inbox")
    gone = {"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found"}}
    rule = FaultRule(re.escape(inbox) + ".*delta", 404, service="graph", count=None, body=gone)
    tenant.stack.sim.add_fault(rule)

    # WHEN a round runs
    tenant.sync()
    tenant.stack.wait_idle(queues=("mail-sync", "mail-sync-poison"))

    # THEN Sent Items was stored, the connection is active and tells the user of the folder
    assert [e["subject"] for e in tenant.company_emails("Acme")] == ["Quote"]
    [shown] = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert (shown["state"], shown["lastError"]) == ("active", None)
    assert shown["lastRound"]["missingFolders"] == 1
    assert "no longer exists" in shown["explanation"]["summary"]


def test_message_with_a_time_utc_cannot_hold_does_not_stall_the_mailbox(tenant: Tenant) -> None:
    """A message sent '0001-01-01T00:00:00+01:00' with no receive time syncs like any other."""
    # GIVEN a customer email and, beside it, one whose only time is before year 1 in UTC
    tenant.add_company("Acme", ["acme.example"])
    upn = tenant.add_user("ann")
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    odd = mail_from("cto@acme.example", upn, "Odd date")
    odd["receivedDateTime"] = None
    odd["sentDateTime"] = "0001-01-01T00:00:00+01:00"
    tenant.stack.sim.add_message(upn, "Inbox", odd)
    tenant.stack.sim.add_message(upn, "Inbox", mail_from("cfo@acme.example", upn, "Renewal"))

    # WHEN a round runs
    tenant.sync()
    tenant.stack.wait_idle(queues=("mail-sync", "mail-sync-poison"))

    # THEN both are stored and the connection is active
    [shown] = tenant.stack.call("GET", "me/connections", tenant.token(upn)).json()["items"]
    assert (shown["state"], shown["lastError"]) == ("active", None)
    assert sorted(e["subject"] for e in tenant.company_emails("Acme")) == ["Odd date", "Renewal"]
