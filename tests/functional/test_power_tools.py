"""Power tools through the local host: delete one email, revoke, purge; and their audit."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devstack.simulator.faults import FaultRule
from shared.adapters.tablelimits import table_key
from tests.functional.conftest import Tenant
from tests.functional.test_mail_sync import message
from tests.functional.test_moves_and_duplicates import choose_folders
from tests.functional.test_sync_resilience import _job, connected, graph_calls, last_round

pytestmark = pytest.mark.stack


def _subjects(tenant: Tenant, company: str) -> list[str]:
    return sorted(e["subject"] for e in tenant.company_emails(company))


def _email_id(tenant: Tenant, company: str, subject: str) -> str:
    return next(e["id"] for e in tenant.company_emails(company) if e["subject"] == subject)


def _wait_purge(tenant: Tenant, token: str, url: str, rounds: int = 300) -> dict[str, Any]:
    """Poll a purge's status URL until it ends; return its last status."""
    path = url.removeprefix("/api/")
    for _ in range(rounds):
        status = tenant.stack.call("GET", path, token).json()
        if status["state"] in {"completed", "failed"}:
            return dict(status)
        time.sleep(0.1)
    pytest.fail("purge did not end")


def _audit(tenant: Tenant, action: str) -> list[dict[str, Any]]:
    answer = tenant.stack.call("GET", "admin/audit", tenant.admin, params={"action": action})
    return list(answer.json()["items"])


def _blobs(tenant: Tenant) -> list[str]:
    service = BlobServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    prefix = table_key(tenant.tenant_id) + "/"
    return [b.name for b in service.get_container_client("bodies").list_blobs(prefix)]


def test_deleted_email_stays_gone_through_resync_move_reset_and_other_mailboxes(
    tenant: Tenant,
) -> None:
    """A deleted email never comes back: not on resync, a move, a cursor reset, nor a copy."""
    # GIVEN an email both Ann and Ben hold, and another only Ann holds
    ann = connected(tenant, "ann", "Acme", "acme.example")
    ben = connected(tenant, "ben", "Acme", "acme.example")
    shared = message("jane@acme.example", [ann, ben], "shared")
    ids = tenant.stack.sim.load_messages(ann, "inbox", [shared])
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "own")])
    tenant.stack.sim.load_messages(ben, "inbox", [dict(shared)])
    tenant.sync()
    email = _email_id(tenant, "Acme", "shared")

    # WHEN Ann deletes it, then it syncs again, moves folder, and Ann's cursors are reset
    deleted = tenant.stack.call("DELETE", f"emails/{email}", tenant.token(ann))
    tenant.sync()
    tenant.stack.sim.move_message(ann, ids[0], "archive")
    tenant.stack.sim.update_message(
        ben, tenant.stack.sim.messages(ben, "inbox")[0]["id"], {"isRead": True}
    )
    tenant.sync()
    tenant.stack.sim.invalidate_delta_tokens(ann)
    tenant.sync()

    # THEN it is gone for the whole tenant while Ann's other email stays
    assert deleted.status_code == 204
    assert _subjects(tenant, "Acme") == ["own"]
    assert tenant.stack.call("GET", f"emails/{email}", tenant.admin).status_code == 404
    entry = _audit(tenant, "email.delete")[0]
    assert (entry["outcome"], entry["targetId"], entry["counts"]) == (
        "succeeded",
        email,
        {"holders": 2},
    )


def test_only_a_holder_or_an_admin_may_delete_an_email(tenant: Tenant) -> None:
    """A reader who does not hold an email gets 403; another tenant gets 404; an admin may."""
    # GIVEN Ann's email, a colleague who can read it, and an admin of another tenant
    ann = connected(tenant, "ann", "Acme", "acme.example")
    carl = tenant.add_user("carl")
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "mine")])
    tenant.sync()
    email = _email_id(tenant, "Acme", "mine")
    outsider = tenant.stack.token(str(uuid.uuid4()), str(uuid.uuid4()), roles=("Admin",))

    # WHEN each tries to delete it
    by_reader = tenant.stack.call("DELETE", f"emails/{email}", tenant.token(carl))
    by_outsider = tenant.stack.call("DELETE", f"emails/{email}", outsider)
    by_admin = tenant.stack.call("DELETE", f"emails/{email}", tenant.admin)

    # THEN only the admin succeeds, and the refusal is audited
    assert by_reader.status_code == 403
    assert by_outsider.status_code == 404
    assert by_admin.status_code == 204
    outcomes = [e["outcome"] for e in _audit(tenant, "email.delete")]
    assert outcomes == ["succeeded", "refused"]


def test_revoke_destroys_the_token_and_queued_jobs_make_no_graph_call(tenant: Tenant) -> None:
    """After revoke the token is gone, a queued job is a no-op, and a new consent starts over."""
    # GIVEN Ann's synced mailbox
    ann = connected(tenant, "ann", "Acme", "acme.example")
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "first")])
    tenant.sync()

    # WHEN she revokes mail, a job for her runs, and later she connects again
    revoked = tenant.stack.call("POST", "me/connections/mail/revoke", tenant.token(ann))
    before = graph_calls(tenant, ann)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, ann))
    tenant.stack.wait_idle()
    after_job = graph_calls(tenant, ann)
    tables = TableServiceClient.from_connection_string(tenant.stack.env["AzureWebJobsStorage"])
    row = tables.get_table_client("connections").get_entity(
        table_key(tenant.tenant_id), table_key(tenant.users[ann], "mail")
    )
    tenant.stack.connect_mail(tenant.token(ann)).raise_for_status()
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "second")])
    tenant.sync()

    # THEN the connection was revoked without its token, no Graph call was made, data stayed,
    # and the new consent synced the whole mailbox again from scratch
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert row["state"] == "revoked"
    assert not row.get("tokenCache")
    assert after_job == before
    assert _subjects(tenant, "Acme") == ["first", "second"]
    listed = tenant.stack.call("GET", "me/connections", tenant.token(ann)).json()["items"]
    assert listed[0]["state"] == "active"
    assert listed[0]["lastRound"]["seen"] == 2
    assert [e["outcome"] for e in _audit(tenant, "connection.revoke")] == ["succeeded"]


def test_revoke_while_a_job_runs_stores_nothing_more(tenant: Tenant) -> None:
    """A job in flight when its connection is revoked stops before its next page."""
    # GIVEN Ann's mailbox of three pages, whose second page Graph is slow to serve (the job
    # asks for it as soon as the first page arrives, so the delay covers storing that page too)
    ann = connected(tenant, "ann", "Acme", "acme.example")
    batch = [message("jane@acme.example", [ann], f"m{i}", days_ago=i / 10 + 0.1) for i in range(75)]
    tenant.stack.sim.load_messages(ann, "inbox", batch)
    # Only Inbox is slowed: Sent Items syncs at the same time and would take the fault instead.
    inbox = re.escape(tenant.stack.sim.folder_id(ann, "inbox"))
    slow = FaultRule(inbox + r"/messages/delta$", 0, service="graph", user=ann, after=1, delay_s=8)
    tenant.stack.sim.add_fault(slow)

    # WHEN the job has stored its first page and Ann revokes while it waits for the second
    tenant.stack.run_function("mail_sync_worker", _job(tenant, ann))
    for _ in range(100):
        if len(tenant.company_emails("Acme")) >= 25:
            break
        time.sleep(0.1)
    tenant.stack.call("POST", "me/connections/mail/revoke", tenant.token(ann)).raise_for_status()
    tenant.stack.wait_idle()
    time.sleep(8.5)

    # THEN only the first page was stored, and the connection stays revoked
    assert len(tenant.company_emails("Acme")) == 25
    listed = tenant.stack.call("GET", "me/connections", tenant.token(ann)).json()["items"]
    assert listed[0]["state"] == "revoked"


def test_purge_removes_own_mail_keeps_shared_and_nothing_syncs_back(tenant: Tenant) -> None:
    """A purge takes Ann's mail and bodies out, keeps what Ben holds, and none of it returns."""
    # GIVEN Ann's own emails (one with a body too large for a table) and one she shares with Ben
    ann = connected(tenant, "ann", "Acme", "acme.example")
    ben = connected(tenant, "ben", "Acme", "acme.example")
    shared = message("jane@acme.example", [ann, ben], "shared")
    big = message("jane@acme.example", [ann], "big")
    big["body"] = {"contentType": "text", "content": "x" * 200_000}
    own = [message("jane@acme.example", [ann], f"own {i}") for i in range(5)]
    tenant.stack.sim.load_messages(ann, "inbox", [shared, big, *own])
    tenant.stack.sim.load_messages(ben, "inbox", [dict(shared)])
    tenant.sync()
    assert _blobs(tenant)

    # WHEN Ann purges her mail (twice at once), it completes, and her mailbox syncs and resets
    first = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "mail"})
    second = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "mail"})
    status = _wait_purge(tenant, tenant.token(ann), first.headers["Location"])
    tenant.sync()
    tenant.stack.sim.invalidate_delta_tokens(ann)
    tenant.sync()

    # THEN only the shared email is left, held by Ben alone, with no body blob of Ann's left
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert status["state"] == "completed"
    assert status["counts"] == {"removed": 6, "keptShared": 1}
    assert _subjects(tenant, "Acme") == ["shared"]
    assert _blobs(tenant) == []
    email = _email_id(tenant, "Acme", "shared")
    assert tenant.stack.call("GET", f"emails/{email}", tenant.token(ben)).status_code == 200
    assert tenant.stack.call("GET", f"emails/{email}", tenant.token(ann)).status_code == 200
    audited = [(e["outcome"], e["targetId"]) for e in _audit(tenant, "emails.purge")]
    job = first.json()["id"]
    assert audited == [("succeeded", job), ("accepted", job), ("accepted", job)]


def test_admin_purges_and_revokes_another_user_but_not_another_tenants(tenant: Tenant) -> None:
    """Admins act on their tenant's users; a plain user and another tenant's admin cannot."""
    # GIVEN Ann's synced mail, a colleague without power tools, and another tenant's admin
    ann = connected(tenant, "ann", "Acme", "acme.example")
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "x")])
    tenant.sync()
    carl = tenant.add_user("carl")
    ann_id = tenant.users[ann]
    other = str(uuid.uuid4())
    outsider = tenant.stack.token(other, str(uuid.uuid4()), roles=("Admin",))
    body = {"name": "Other", "ownDomains": [f"o{other[:8]}.example"]}
    tenant.stack.call("PUT", "admin/tenant", outsider, json=body).raise_for_status()
    call = tenant.stack.call

    # WHEN each tries to revoke and purge Ann
    carl_revoke = call("POST", f"admin/users/{ann_id}/connections/mail/revoke", tenant.token(carl))
    outsider_purge = call("POST", f"admin/users/{ann_id}/purges", outsider, json={"kind": "mail"})
    outsider_revoke = call("POST", f"admin/users/{ann_id}/connections/mail/revoke", outsider)
    admin_purge = call("POST", f"admin/users/{ann_id}/purges", tenant.admin, json={"kind": "mail"})
    status = _wait_purge(tenant, tenant.admin, admin_purge.headers["Location"])
    admin_revoke = call("POST", f"admin/users/{ann_id}/connections/mail/revoke", tenant.admin)

    # THEN the plain user is forbidden, the other tenant finds nobody, the admin succeeds
    assert carl_revoke.status_code == 403
    assert outsider_purge.status_code == outsider_revoke.status_code == 404
    assert status["state"] == "completed"
    assert status["userId"] == ann_id
    assert admin_revoke.json()["state"] == "revoked"
    assert tenant.company_emails("Acme") == []
    assert (
        call("GET", admin_purge.headers["Location"].removeprefix("/api/"), outsider).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [({"kind": "contacts"}, "kind"), ({"kind": 5}, "kind")],
)
def test_purge_of_an_unknown_kind_is_refused(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    """Only mail and calendar can be purged."""
    upn = tenant.add_user("ann")
    answer = tenant.stack.call("POST", "me/purges", tenant.token(upn), json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == field


def test_purge_while_a_sync_job_runs_leaves_nothing_behind(tenant: Tenant) -> None:
    """A purge asked for mid-sync waits for the job, then nothing received before it remains."""
    # GIVEN Ann's three pages of mail, the second slow to come, and a job that stored the first
    ann = connected(tenant, "ann", "Acme", "acme.example")
    batch = [message("jane@acme.example", [ann], f"m{i}", days_ago=i / 10 + 0.1) for i in range(75)]
    tenant.stack.sim.load_messages(ann, "inbox", batch)
    slow = FaultRule(r"/messages/delta$", 0, service="graph", user=ann, after=1, delay_s=3)
    tenant.stack.sim.add_fault(slow)
    tenant.stack.run_function("mail_sync_worker", _job(tenant, ann))
    for _ in range(100):
        if len(tenant.company_emails("Acme")) >= 25:
            break
        time.sleep(0.1)

    # WHEN Ann purges while the job still runs, and the purge ends
    started = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "mail"})
    status = _wait_purge(tenant, tenant.token(ann), started.headers["Location"], rounds=600)
    tenant.sync()

    # THEN no email is left, from the job's later pages or from a round after the purge
    assert status["state"] == "completed"
    assert tenant.company_emails("Acme") == []


def test_purged_mail_stays_out_after_a_new_consent_and_a_reset(tenant: Tenant) -> None:
    """Consenting again, even after a revoke, does not bring purged mail back."""
    # GIVEN Ann's purged mailbox
    ann = connected(tenant, "ann", "Acme", "acme.example")
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "old")])
    tenant.sync()
    started = tenant.stack.call("POST", "me/purges", tenant.token(ann), json={"kind": "mail"})
    _wait_purge(tenant, tenant.token(ann), started.headers["Location"])

    # WHEN she revokes, consents again, her cursors reset, and new mail arrives
    tenant.stack.call("POST", "me/connections/mail/revoke", tenant.token(ann)).raise_for_status()
    tenant.stack.connect_mail(tenant.token(ann)).raise_for_status()
    tenant.stack.sim.invalidate_delta_tokens(ann)
    time.sleep(1.1)
    tenant.stack.sim.load_messages(
        ann, "inbox", [message("jane@acme.example", [ann], "new", days_ago=-0.0001)]
    )
    tenant.sync()

    # THEN only the mail received after the purge is stored
    assert _subjects(tenant, "Acme") == ["new"]


def test_audit_names_the_resolved_user_and_refused_purge_calls(tenant: Tenant) -> None:
    """An id with spaces or upper case is audited as the user it resolves to; bad calls too."""
    # GIVEN Ann, named by the admin with stray spaces and upper case
    ann = connected(tenant, "ann", "Acme", "acme.example")
    ann_id = tenant.users[ann]
    named = quote(f" {ann_id.upper()} ", safe="")
    call = tenant.stack.call

    # WHEN the admin purges and revokes her that way, and a purge with a bad body is sent
    purge = call("POST", f"admin/users/{named}/purges", tenant.admin, json={"kind": "mail"})
    revoke = call("POST", f"admin/users/{named}/connections/mail/revoke", tenant.admin)
    bad = call("POST", "me/purges", tenant.token(ann), json={"kind": "contacts"})

    # THEN both actions worked, the audit names Ann's id, and the bad call is audited refused
    assert purge.status_code == 202
    assert purge.headers["Location"] == f"/api/admin/users/{ann_id}/purges/{purge.json()['id']}"
    assert revoke.status_code == 200
    by_ann = tenant.stack.call("GET", "admin/audit", tenant.admin, params={"userId": ann_id})
    actions = [(e["action"], e["outcome"]) for e in by_ann.json()["items"]]
    assert ("emails.purge", "accepted") in actions
    assert ("connection.revoke", "succeeded") in actions
    assert ("purge.start", "refused") in actions
    assert bad.status_code == 400


def test_a_token_with_an_upper_case_oid_acts_as_the_same_user(tenant: Tenant) -> None:
    """The caller's ids are read in one spelling, so an upper-case oid is the same user."""
    # GIVEN Ann's email, and a token for her whose oid is written in upper case
    ann = connected(tenant, "ann", "Acme", "acme.example")
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "x")])
    tenant.sync()
    email = _email_id(tenant, "Acme", "x")
    shouting = tenant.stack.token(tenant.tenant_id, tenant.users[ann].upper(), upn=ann)

    # WHEN she lists her connections and deletes her email with it
    listed = tenant.stack.call("GET", "me/connections", shouting).json()["items"]
    deleted = tenant.stack.call("DELETE", f"emails/{email}", shouting)

    # THEN she is herself
    assert [c["kind"] for c in listed] == ["mail"]
    assert deleted.status_code == 204


def _another_tenant(tenant: Tenant) -> Tenant:
    """A second tenant on the same stack, set up by its own admin."""
    tenant_id = str(uuid.uuid4())
    domain = f"o{tenant_id[:8]}.example"
    admin = tenant.stack.token(tenant_id, str(uuid.uuid4()), roles=("Admin",))
    body = {"name": "Other", "ownDomains": [domain]}
    tenant.stack.call("PUT", "admin/tenant", admin, json=body).raise_for_status()
    return Tenant(tenant.stack, tenant_id, domain, admin)


def test_power_tools_on_others_workflow_opens_a_roles_power_over_its_tenants_users(
    tenant: Tenant,
) -> None:
    """A non-admin role granted powerToolsOnOthers revokes and purges colleagues, no one else."""
    # GIVEN Ann's synced mail, Sue whose Support role is granted powerToolsOnOthers, and a
    # registered user of another tenant
    policy = {"roles": {"Support": {"workflows": ["powerToolsOnOthers"]}}}
    call = tenant.stack.call
    call("PUT", "admin/permissions", tenant.admin, json=policy).raise_for_status()
    ann = connected(tenant, "ann", "Acme", "acme.example")
    tenant.stack.sim.load_messages(ann, "inbox", [message("jane@acme.example", [ann], "x")])
    tenant.sync()
    sue = tenant.token(tenant.add_user("sue", ("Support",)))
    ann_id = tenant.users[ann]
    other = _another_tenant(tenant)
    zed_id = other.users[other.add_user("zed")]

    # WHEN Sue revokes and purges Ann, then tries both on the other tenant's user
    revoked = call("POST", f"admin/users/{ann_id}/connections/mail/revoke", sue)
    purge = call("POST", f"admin/users/{ann_id}/purges", sue, json={"kind": "mail"})
    status = _wait_purge(tenant, sue, purge.headers["Location"])
    foreign_revoke = call("POST", f"admin/users/{zed_id}/connections/mail/revoke", sue)
    foreign_purge = call("POST", f"admin/users/{zed_id}/purges", sue, json={"kind": "mail"})

    # THEN Ann's connection is revoked and her mail purged; the other tenant's user is unknown
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    assert purge.status_code == 202, purge.text
    assert (status["state"], status["userId"]) == ("completed", ann_id)
    assert status["counts"] == {"removed": 1, "keptShared": 0}
    assert tenant.company_emails("Acme") == []
    assert foreign_revoke.status_code == foreign_purge.status_code == 404

    # WHEN the workflow is taken from the Support role and Sue tries again
    policy = {"roles": {"Support": {"workflows": []}}}
    call("PUT", "admin/permissions", tenant.admin, json=policy).raise_for_status()
    again_revoke = call("POST", f"admin/users/{ann_id}/connections/mail/revoke", sue)
    again_purge = call("POST", f"admin/users/{ann_id}/purges", sue, json={"kind": "mail"})
    again_status = call("GET", purge.headers["Location"].removeprefix("/api/"), sue)

    # THEN each is refused naming the workflow, the earlier purge's status too
    for answer in (again_revoke, again_purge, again_status):
        assert answer.status_code == 403, answer.text
        assert "powerToolsOnOthers" in answer.json()["error"]["message"]


def test_deleted_email_moved_into_another_synced_folder_does_not_come_back(
    tenant: Tenant,
) -> None:
    """A deleted email the user files into another synced folder is seen there and dropped."""
    # GIVEN Ann syncing Inbox and Archive, with two customer emails in Inbox
    ann = connected(tenant, "ann", "Acme", "acme.example")
    choose_folders(tenant, ann, "inbox", "archive")
    moved, stays = (message("jane@acme.example", [ann], s) for s in ("moved", "stays"))
    (item, _) = tenant.stack.sim.load_messages(ann, "inbox", [moved, stays])
    tenant.sync()
    email = _email_id(tenant, "Acme", "moved")

    # WHEN she deletes one in the product, then moves it to Archive and a round runs
    deleted = tenant.stack.call("DELETE", f"emails/{email}", tenant.token(ann))
    tenant.sync()
    tenant.stack.sim.move_message(ann, item, "archive")
    tenant.sync()

    # THEN the round read it from Archive and dropped it as deleted; only the other email is
    # stored
    assert deleted.status_code == 204
    assert last_round(tenant, ann)["lastRound"]["dropped"] == {"deleted": 1}
    assert _subjects(tenant, "Acme") == ["stays"]
    assert tenant.stack.call("GET", f"emails/{email}", tenant.admin).status_code == 404


def test_deleted_email_without_an_internet_message_id_stays_gone(tenant: Tenant) -> None:
    """An email with no internetMessageId, known only by its item id, never syncs back."""
    # GIVEN Ann syncing Inbox and Archive, and a customer email that carries no
    # internetMessageId, next to an ordinary one
    ann = connected(tenant, "ann", "Acme", "acme.example")
    choose_folders(tenant, ann, "inbox", "archive")
    bare = message("jane@acme.example", [ann], "bare", internetMessageId=None)
    (item, _) = tenant.stack.sim.load_messages(
        ann, "inbox", [bare, message("jane@acme.example", [ann], "plain")]
    )
    tenant.sync()
    email = _email_id(tenant, "Acme", "bare")

    # WHEN she deletes it, and it is synced again, moved to Archive, read again after a cursor
    # reset, and at last shows an internetMessageId it never had
    deleted = tenant.stack.call("DELETE", f"emails/{email}", tenant.token(ann))
    tenant.sync()
    tenant.stack.sim.move_message(ann, item, "archive")
    tenant.sync()
    tenant.stack.sim.invalidate_delta_tokens(ann)
    tenant.sync()
    after_reset = last_round(tenant, ann)["lastRound"]["dropped"]
    late_id = {"internetMessageId": f"<late-{uuid.uuid4()}@acme.example>"}
    tenant.stack.sim.update_message(ann, item, late_id)
    tenant.sync()

    # THEN it never came back, each read of it was dropped as deleted, and the other stays
    assert deleted.status_code == 204
    assert after_reset == {"deleted": 1}
    assert last_round(tenant, ann)["lastRound"]["dropped"] == {"deleted": 1}
    assert _subjects(tenant, "Acme") == ["plain"]
    assert tenant.stack.call("GET", f"emails/{email}", tenant.admin).status_code == 404
