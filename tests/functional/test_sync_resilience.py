"""Mail sync under the faults of CASES.md: expired cursors, moves, duplicates, tokens, crashes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devstack.simulator import FaultRule
from shared.sync.emailrows import email_partition
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message

pytestmark = pytest.mark.stack

SYNC_STATE_NOT_FOUND = {
    "error": {"code": "SyncStateNotFound", "message": "The sync state generation is not found."}
}


def connected(tenant: Tenant, alias: str, company: str, domain: str) -> str:
    """A consented user and a company; return the user's upn."""
    upn = tenant.add_user(alias)
    if company not in tenant.companies:
        tenant.add_company(company, [domain])
    tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    return upn


def last_round(tenant: Tenant, upn: str, token: str | None = None) -> dict[str, Any]:
    """The user's mail connection as the API shows it."""
    answer = tenant.stack.call("GET", "me/connections", token or tenant.token(upn))
    items = answer.json()["items"]
    return dict(items[0])


def stored_ids(tenant: Tenant, company: str) -> list[str]:
    """The internetMessageIds a company holds, with repeats if any."""
    return [e["internetMessageId"] for e in tenant.company_emails(company)]


def graph_calls(tenant: Tenant, upn: str, path_part: str = "") -> int:
    """How many Graph requests the simulator served for a user so far."""
    oid = tenant.users[upn]
    return sum(
        1
        for r in tenant.stack.sim.requests_seen()
        if r.service == "graph" and r.user == oid and path_part in r.path
    )


def test_expired_delta_link_resyncs_folder_without_duplicates(tenant: Tenant) -> None:
    """BR-01: a 410 on a stored deltaLink resets the folder; the resync duplicates nothing."""
    # GIVEN a synced mailbox whose delta state Exchange then forgets
    upn = connected(tenant, "ivy", "Acme", "acme.example")
    first = [message("a@acme.example", [upn], f"m{i}", days_ago=i + 1) for i in range(5)]
    tenant.stack.sim.load_messages(upn, "inbox", first)
    tenant.sync()
    tenant.stack.sim.invalidate_delta_tokens(upn)
    newer = message("b@acme.example", [upn], "after the reset", days_ago=0.01)
    tenant.stack.sim.load_messages(upn, "inbox", [newer])

    # WHEN the next round runs
    tenant.sync()

    # THEN all six are stored once and the connection is healthy
    ids = stored_ids(tenant, "Acme")
    assert sorted(ids) == sorted(m["internetMessageId"] for m in [*first, newer])
    state = last_round(tenant, upn)
    assert state["state"] == "active"
    assert state["lastError"] is None


def test_expired_next_link_mid_round_restarts_round(tenant: Tenant) -> None:
    """BR-01: a 410 on a nextLink in the middle of paging restarts the round, and it completes."""
    # GIVEN 60 messages (three pages) and Graph forgetting the round on the second page
    upn = connected(tenant, "jon", "Acme", "acme.example")
    batch = [message("a@acme.example", [upn], f"m{i}", days_ago=i / 10 + 0.1) for i in range(60)]
    tenant.stack.sim.load_messages(upn, "inbox", batch)
    rule = FaultRule(
        r"/messages/delta$", 410, service="graph", user=upn, body=SYNC_STATE_NOT_FOUND, after=1
    )
    tenant.stack.sim.add_fault(rule)

    # WHEN one round runs
    tenant.sync()

    # THEN every message is stored exactly once and the round recorded as complete
    ids = stored_ids(tenant, "Acme")
    assert len(ids) == 60
    assert len(set(ids)) == 60
    assert last_round(tenant, upn)["lastRound"]["complete"] is True


def test_message_moved_between_folders_stays_one_record(tenant: Tenant) -> None:
    """BR-02: @removed in Inbox and present in Archive in the same cycle keeps one record."""
    # GIVEN a stored customer email, and Archive synced too
    upn = connected(tenant, "kim", "Acme", "acme.example")
    archive = tenant.stack.sim.folder_id(upn, "archive")
    inbox = tenant.stack.sim.folder_id(upn, "inbox")
    body = {"folderIds": [inbox, archive]}
    tenant.stack.call("PUT", "me/connections/mail/folders", tenant.token(upn), json=body)
    mail = message("a@acme.example", [upn], "moving")
    (item,) = tenant.stack.sim.load_messages(upn, "inbox", [mail])
    tenant.sync()

    # WHEN the user archives it and a round runs
    tenant.stack.sim.move_message(upn, item, "archive")
    tenant.sync()

    # THEN the email is still stored once
    assert stored_ids(tenant, "Acme") == [mail["internetMessageId"]]
    assert last_round(tenant, upn)["lastRound"]["removedSeen"] == 1
    assert last_round(tenant, upn)["lastRound"]["unlinked"] == 0


def test_message_moved_to_unsynced_folder_is_kept_after_get(tenant: Tenant) -> None:
    """BR-02: an id only @removed is checked with a GET; a message still in the mailbox stays."""
    # GIVEN a stored email in Inbox, and Archive not synced
    upn = connected(tenant, "lee", "Acme", "acme.example")
    mail = message("a@acme.example", [upn], "archived")
    (item,) = tenant.stack.sim.load_messages(upn, "inbox", [mail])
    tenant.sync()

    # WHEN it moves to Archive (unsynced) and a round runs
    tenant.stack.sim.move_message(upn, item, "archive")
    tenant.sync()

    # THEN it is kept
    assert stored_ids(tenant, "Acme") == [mail["internetMessageId"]]


def test_message_deleted_from_mailbox_is_unlinked(tenant: Tenant) -> None:
    """BR-02: an @removed id whose GET answers 404 leaves the product, its only holder gone."""
    # GIVEN two stored emails
    upn = connected(tenant, "max", "Acme", "acme.example")
    keep, gone = (message("a@acme.example", [upn], s, days_ago=d) for s, d in (("k", 2), ("g", 1)))
    items = tenant.stack.sim.load_messages(upn, "inbox", [keep, gone])
    tenant.sync()

    # WHEN the user deletes one for good and a round runs
    tenant.stack.sim.delete_message(upn, items[1])
    tenant.sync()

    # THEN only the other remains
    assert stored_ids(tenant, "Acme") == [keep["internetMessageId"]]


def test_deletion_by_one_holder_keeps_email_for_the_other(tenant: Tenant) -> None:
    """BR-03: two holders make one record; one deleting it in Outlook leaves it with the other."""
    # GIVEN one customer email in two mailboxes
    ann = connected(tenant, "nan", "Acme", "acme.example")
    ben = connected(tenant, "ned", "Acme", "acme.example")
    mail = message("a@acme.example", [ann, ben], "both")
    (ann_item,) = tenant.stack.sim.load_messages(ann, "inbox", [mail])
    tenant.stack.sim.load_messages(ben, "inbox", [dict(mail)])
    tenant.sync()
    before = stored_ids(tenant, "Acme")

    # WHEN one user deletes their copy and rounds run twice
    tenant.stack.sim.delete_message(ann, ann_item)
    tenant.sync()
    tenant.sync()

    # THEN the one record stays, held by the other
    assert before == [mail["internetMessageId"]]
    assert stored_ids(tenant, "Acme") == [mail["internetMessageId"]]


def test_messages_without_message_id_are_not_merged(tenant: Tenant) -> None:
    """BR-03: two copies without internetMessageId stay two records."""
    # GIVEN the same message without an internetMessageId in two mailboxes
    ann = connected(tenant, "oli", "Acme", "acme.example")
    ben = connected(tenant, "oma", "Acme", "acme.example")
    mail = message("a@acme.example", [ann, ben], "no id")
    del mail["internetMessageId"]
    tenant.stack.sim.load_messages(ann, "inbox", [mail])
    tenant.stack.sim.load_messages(ben, "inbox", [dict(mail)])

    # WHEN a round runs
    tenant.sync()

    # THEN there are two records
    assert len(tenant.company_emails("Acme")) == 2


def test_revoked_grant_moves_to_reauth_once_and_resumes_after_consent(tenant: Tenant) -> None:
    """BR-08: invalid_grant stops Graph calls, keeps data, and a new consent resumes."""
    # GIVEN a synced mailbox whose refresh token Microsoft then refuses (inactive 90 days)
    upn = connected(tenant, "pam", "Acme", "acme.example")
    old = message("a@acme.example", [upn], "before", days_ago=1)
    tenant.stack.sim.load_messages(upn, "inbox", [old])
    tenant.sync()
    api = long_token(tenant, upn)
    tenant.stack.sim.revoke_refresh_tokens(upn, error_code=700082)
    tenant.stack.sim.advance_time(3 * 3600)

    # WHEN two rounds run
    tenant.sync()
    state = last_round(tenant, upn, api)
    calls = graph_calls(tenant, upn)
    tenant.sync()

    # THEN the connection waits for consent, the second round called nothing, data stays
    assert state["state"] == "reauth_required"
    assert state["lastError"] == "invalid_grant:700082"
    assert graph_calls(tenant, upn) == calls
    assert stored_ids(tenant, "Acme") == [old["internetMessageId"]]

    # WHEN the user consents again and a new message arrives
    tenant.stack.connect_mail(api).raise_for_status()
    new = message("a@acme.example", [upn], "after", days_ago=0.01)
    tenant.stack.sim.load_messages(upn, "inbox", [new])
    tenant.sync()

    # THEN sync resumes from the stored cursor: only the new message is read
    resumed = last_round(tenant, upn, api)
    assert resumed["state"] == "active"
    assert resumed["lastRound"]["seen"] == 1
    assert len(stored_ids(tenant, "Acme")) == 2


def test_transient_identity_failure_only_retries(tenant: Tenant) -> None:
    """BR-08: a 503 from the token endpoint is retried; the round completes, still active."""
    # GIVEN an expired access token, a new message and an identity platform failing once
    upn = connected(tenant, "quin", "Acme", "acme.example")
    api = long_token(tenant, upn)
    tenant.sync()
    tenant.stack.sim.advance_time(3 * 3600)
    new = message("a@acme.example", [upn], "after-outage", days_ago=0.01)
    tenant.stack.sim.load_messages(upn, "inbox", [new])
    token_calls = len(token_requests(tenant))
    body = {"error": "temporarily_unavailable", "error_codes": [90033]}
    rule = FaultRule(r"/token$", 503, service="identity", body=body, count=1)
    tenant.stack.sim.add_fault(rule)

    # WHEN a round runs through the queue (a failed attempt is retried by the host)
    tenant.sync()

    # THEN the 503 was served, a later token request succeeded, and the round stored the message
    statuses = [r.status for r in token_requests(tenant)[token_calls:]]
    assert statuses[0] == 503
    assert 200 in statuses[1:]
    state = last_round(tenant, upn, api)
    assert state["state"] == "active"
    assert state["lastRound"]["seen"] == 1
    assert new["internetMessageId"] in stored_ids(tenant, "Acme")


def token_requests(tenant: Tenant) -> list[Any]:
    """The simulator's token endpoint requests so far, oldest first."""
    return [
        r
        for r in tenant.stack.sim.requests_seen()
        if r.service == "identity" and r.path.endswith("/token")
    ]


def long_token(tenant: Tenant, upn: str) -> str:
    """An API token that stays valid however far the simulator's clock is moved."""
    oid = tenant.users[upn]
    return tenant.stack.sim.issue_api_token(tenant.tenant_id, oid, upn=upn, expires_in=400 * 86_400)


def _job(tenant: Tenant, upn: str) -> str:
    return f'{{"kind":"mail","tenant":"{tenant.tenant_id}","user":"{tenant.users[upn]}"}}'


def test_rotated_refresh_tokens_keep_a_connection_alive_for_120_days(tenant: Tenant) -> None:
    """BR-07: daily syncs for 120 days with 90-day refresh tokens never fail."""
    # GIVEN a connected mailbox
    upn = connected(tenant, "ray", "Acme", "acme.example")
    api = long_token(tenant, upn)

    # WHEN a day passes before each of 120 rounds
    failures = []
    for day in range(120):
        tenant.stack.sim.advance_time(86_400)
        tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
        tenant.stack.wait_idle()
        state = last_round(tenant, upn, api)
        if state["state"] != "active" or state["lastError"]:
            failures.append((day, state["state"], state["lastError"]))

    # THEN none failed, and tokens were refreshed along the way
    assert failures == []
    token_calls = [r for r in tenant.stack.sim.requests_seen() if r.path.endswith("/token")]
    assert len(token_calls) >= 120


@pytest.mark.parametrize("pages_before_kill", [1, 2], ids=["after-page-1", "after-page-2"])
def test_worker_killed_mid_backfill_resumes_from_checkpoint(
    tenant: Tenant, pages_before_kill: int
) -> None:
    """A worker killed after any page resumes there; the end state equals an uninterrupted run."""
    # GIVEN a reference user whose 75 messages (three pages) were synced without interruption,
    # and a user with the same 75 messages from another company, whose next page will be slow
    reference = connected(tenant, "rex", "Beta", "beta.example")
    upn = connected(tenant, "sam", "Acme", "acme.example")
    for user, sender in ((reference, "a@beta.example"), (upn, "a@acme.example")):
        batch = [message(sender, [user], f"m{i}", days_ago=i / 10 + 0.1) for i in range(75)]
        tenant.stack.sim.load_messages(user, "inbox", batch)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, reference))
    tenant.stack.wait_idle()
    # Only Inbox is slowed: Sent Items syncs at the same time, so "the next delta request" of
    # the user could be its page instead.
    inbox = tenant.stack.sim.folder_id(upn, "inbox")
    slow = FaultRule(
        re.escape(inbox) + r"/messages/delta$",
        0,
        service="graph",
        user=upn,
        after=pages_before_kill,
        delay_s=5,
    )
    tenant.stack.sim.add_fault(slow)
    baseline = graph_calls(tenant, upn, inbox)

    # WHEN the worker is killed while it waits for the slow page, and the job is delivered again
    tenant.stack.run_function("mail_sync_worker", _job(tenant, upn))
    _wait_for_graph_calls(tenant, upn, inbox, baseline + pages_before_kill)
    # The slow page is asked for as soon as the page before arrives, while that page is being
    # stored: wait until the stored pages' emails are in, then for the cursor write after them.
    _wait_for_emails(tenant, "Acme", 25 * pages_before_kill)
    time.sleep(0.5)
    killed_at = time.monotonic()
    tenant.stack.kill_host()
    queue = QueueClient.from_connection_string(
        tenant.stack.env["AzureWebJobsStorage"],
        "mail-sync",
        message_encode_policy=TextBase64EncodePolicy(),
    )
    queue.clear_messages()
    queue.send_message(_job(tenant, upn))
    tenant.stack.wait_idle()
    # The killed request is logged once the simulator has served it, after its delay.
    time.sleep(max(0.0, killed_at + 5.5 - time.monotonic()))

    # THEN the stored emails, their companies and their holders equal the uninterrupted run's
    state = stored_state(tenant, upn, "Acme")
    assert state == stored_state(tenant, reference, "Beta")
    assert len(state) == 75
    assert {(companies, held_by) for _, companies, held_by in state} == {("own", "self")}

    # AND the pages stored before the kill were not read again: the stored ones, the one in
    # flight, then the rest (a restart from scratch would read every page again)
    assert graph_calls(tenant, upn, inbox) - baseline == 4


def stored_state(tenant: Tenant, upn: str, company: str) -> list[tuple[str, str, str]]:
    """Each email a user holds: subject, companies and holders, with ``company`` and the user
    written as "own" and "self" so that two users' states compare."""
    service = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    holders, emails = service.get_table_client("emailholders"), service.get_table_client("emails")
    names = {company_id: name for name, company_id in tenant.companies.items()}
    users = {oid: "self" if user == upn else user for user, oid in tenant.users.items()}
    state = []
    for row in holders.query_entities("userId eq @u", parameters={"u": tenant.users[upn]}):
        key = str(row["emailKey"])
        email = emails.get_entity(email_partition(tenant.tenant_id, key), key)
        companies = [names[c] for c in json.loads(email["companyIds"])]
        held_by = holders.query_entities("emailKey eq @k", parameters={"k": key})
        state.append(
            (
                str(email["subject"]),
                ",".join(sorted("own" if name == company else name for name in companies)),
                ",".join(sorted(users[str(h["userId"])] for h in held_by)),
            )
        )
    return sorted(state)


def _wait_for_graph_calls(tenant: Tenant, upn: str, path_part: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while graph_calls(tenant, upn, path_part) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _wait_for_emails(tenant: Tenant, company: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(tenant.company_emails(company)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
