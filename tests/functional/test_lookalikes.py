"""Look-alikes: an item that reuses another's identity gains no hold over the stored record.

Mail is merged across mailboxes by ``internetMessageId`` and meetings across calendars by
``iCalUId`` and start (BR-03). Both ids are known to everyone on a thread or invited to a
meeting, and neither ``From`` nor an invitation's organiser is authenticated, so a colleague
(or an outsider writing to one) can put an item carrying a stored item's id into a mailbox.
Such a look-alike must not overwrite the record, make its holder able to read it, or let them
delete it for the tenant.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.functional.conftest import Tenant

pytestmark = pytest.mark.stack


def mail_from(sender: str, to: str, subject: str) -> dict[str, Any]:
    """A Graph message received a day ago, with a new Message-ID."""
    sent = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "internetMessageId": f"<{uuid.uuid4()}@mail.example>",
        "subject": subject,
        "from": {"emailAddress": {"name": "", "address": sender}},
        "sender": {"emailAddress": {"name": "", "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "", "address": to}}],
        "sentDateTime": sent,
        "receivedDateTime": sent,
        "body": {"contentType": "text", "content": subject},
        "bodyPreview": subject,
    }


def meeting_in_three_days(organizer: str, attendee: str, subject: str) -> dict[str, Any]:
    """A one-hour Graph event three days on, with one attendee."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    end = start + timedelta(hours=1)
    return {
        "subject": subject,
        "iCalUId": f"uid-{uuid.uuid4()}",
        "organizer": {"emailAddress": {"address": organizer}},
        "attendees": [{"type": "required", "emailAddress": {"address": attendee}}],
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
    }


def test_reused_ical_uid_under_another_organizer_is_a_meeting_of_its_own(tenant: Tenant) -> None:
    """An invitation reusing a meeting's uid and start under another organiser stays apart."""
    # GIVEN Ann's stored customer meeting, and then Bob's calendar holding an invitation with
    # its uid and start, organised by someone at the customer's domain
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = tenant.add_user("ann"), tenant.add_user("bob")
    for upn in (ann, bob):
        tenant.stack.connect_calendar(tenant.token(upn)).raise_for_status()
    meeting = meeting_in_three_days(ann, "cfo@acme.example", "Board pricing")
    tenant.stack.sim.add_event(ann, meeting)
    tenant.sync()
    [stored] = tenant.company_events("Acme")
    lookalike = meeting | {
        "subject": "hello",
        "organizer": {"emailAddress": {"address": "mallory@acme.example"}},
        "attendees": [{"type": "required", "emailAddress": {"address": bob}}],
    }
    tenant.stack.sim.add_event(bob, lookalike)

    # WHEN a round syncs both calendars and Bob deletes Ann's meeting by its id
    tenant.sync()
    deleted = tenant.stack.call("DELETE", f"events/{stored['id']}", tenant.token(bob))

    # THEN Ann's meeting kept its subject and Bob, no holder of it, was refused
    subjects = sorted(e["subject"] for e in tenant.company_events("Acme"))
    assert subjects == ["Board pricing", "hello"]
    assert deleted.status_code in (403, 404)
    assert stored["id"] in [e["id"] for e in tenant.company_events("Acme")]


def test_genuine_copies_of_a_meeting_stay_one_record(tenant: Tenant) -> None:
    """The organiser's copy and an attendee's copy of one meeting are one record, two holders."""
    # GIVEN a meeting Ann organises with Bob and a customer, in both calendars
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = tenant.add_user("ann"), tenant.add_user("bob")
    for upn in (ann, bob):
        tenant.stack.connect_calendar(tenant.token(upn)).raise_for_status()
    meeting = meeting_in_three_days(ann, "cfo@acme.example", "Renewal")
    meeting["attendees"].append({"type": "required", "emailAddress": {"address": bob.upper()}})
    tenant.stack.sim.add_event(ann, meeting)
    attendee_copy = meeting | {"organizer": {"emailAddress": {"address": ann.upper()}}}
    tenant.stack.sim.add_event(bob, attendee_copy)

    # WHEN a round syncs both calendars
    tenant.sync()

    # THEN the company has one meeting, which Bob may delete as one of its holders
    [stored] = tenant.company_events("Acme")
    deleted = tenant.stack.call("DELETE", f"events/{stored['id']}", tenant.token(bob))
    assert deleted.status_code == 204
    assert tenant.company_events("Acme") == []


def test_a_message_reusing_a_message_id_does_not_overwrite_a_colleagues_email(
    tenant: Tenant,
) -> None:
    """Anyone who has seen a Message-ID (every thread participant: In-Reply-To, References).

    Ann receives a customer email; it is stored. Mallory then sends Bob a different message
    with the same Message-ID. The store keys one record per internetMessageId and a later
    save rewrites it. Found: Ann's stored email now reads Mallory's subject, sender and body;
    the customer's original text is gone from the product.
    Expected: Ann still reads the email she received.
    """
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = tenant.add_user("ann"), tenant.add_user("bob")
    for upn in (ann, bob):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    original = mail_from("cfo@acme.example", ann, "Confidential pricing")
    original["body"] = {"contentType": "text", "content": "Our floor price is 42"}
    tenant.stack.sim.add_message(ann, "Inbox", original)
    tenant.sync()
    [stored] = tenant.company_emails("Acme")
    spoof = mail_from("mallory@acme.example", bob, "hello")
    spoof["internetMessageId"] = original["internetMessageId"]
    spoof["body"] = {"contentType": "text", "content": "nothing to see"}
    tenant.stack.sim.add_message(bob, "Inbox", spoof)

    tenant.sync()

    seen = tenant.stack.call("GET", f"emails/{stored['id']}", tenant.token(ann)).json()
    assert (seen["subject"], seen["from"]["address"], seen["body"]["content"]) == (
        "Confidential pricing",
        "cfo@acme.example",
        "Our floor price is 42",
    )


def test_a_reused_message_id_does_not_let_a_colleague_read_an_email_outside_his_portfolio(
    tenant: Tenant,
) -> None:
    """Bob, with an ``owned`` portfolio and no companies, may not read Ann's customer email.

    Bob gets a message carrying the same Message-ID and any From at the customer's domain (a
    thread participant can send one; From is not authenticated). That makes him a holder of
    the one record,
    and "an email is readable when ... the caller's own mailbox holds it". Once Ann's copy
    changes in her mailbox (she reads it), her copy is saved over the record again.
    Found: Bob's GET /api/emails/{id} answers 200 with Ann's subject, recipients and body.
    Expected: 404, as before the lookalike arrived (or only what his own copy says).
    """
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = tenant.add_user("ann"), tenant.add_user("bob")
    for upn in (ann, bob):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    policy = {"default": {"portfolio": "owned", "features": ["mail"], "workflows": []}}
    tenant.stack.call("PUT", "admin/permissions", tenant.admin, json=policy).raise_for_status()
    original = mail_from("cfo@acme.example", ann, "Confidential pricing")
    original["body"] = {"contentType": "text", "content": "Our floor price is 42"}
    ann_copy = tenant.stack.sim.add_message(ann, "Inbox", original)
    tenant.sync()
    [stored] = tenant.company_emails("Acme")
    before = tenant.stack.call("GET", f"emails/{stored['id']}", tenant.token(bob))
    lookalike = mail_from("mallory@acme.example", bob, "hello")
    lookalike["internetMessageId"] = original["internetMessageId"]
    tenant.stack.sim.add_message(bob, "Inbox", lookalike)
    tenant.sync()
    tenant.stack.sim.update_message(ann, ann_copy, {"isRead": True})

    tenant.sync()

    after = tenant.stack.call("GET", f"emails/{stored['id']}", tenant.token(bob))
    assert before.status_code == 404
    assert after.status_code == 404, after.text[:300]


def test_a_reused_message_id_does_not_let_its_holder_delete_a_colleagues_email(
    tenant: Tenant,
) -> None:
    """The same root cause as above, through the power tools.

    Mallory sends Bob a message reusing the Message-ID of Ann's stored customer email; Bob
    becomes a "holder" of Ann's record, and a holder may delete an email for the whole tenant.
    Found: Bob's DELETE /api/emails/{id} answers 204; Ann's email is gone for everyone and its
    tombstone keeps it out for good.
    Expected: Bob's lookalike never makes him a holder of Ann's email (403 or 404 here).
    """
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = tenant.add_user("ann"), tenant.add_user("bob")
    for upn in (ann, bob):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    original = mail_from("cfo@acme.example", ann, "Confidential pricing")
    tenant.stack.sim.add_message(ann, "Inbox", original)
    tenant.sync()
    [stored] = tenant.company_emails("Acme")
    lookalike = mail_from("mallory@acme.example", bob, "hello")
    lookalike["internetMessageId"] = original["internetMessageId"]
    tenant.stack.sim.add_message(bob, "Inbox", lookalike)
    tenant.sync()

    deleted = tenant.stack.call("DELETE", f"emails/{stored['id']}", tenant.token(bob))

    assert deleted.status_code in (403, 404), deleted.status_code
    assert tenant.stack.call("GET", f"emails/{stored['id']}", tenant.token(ann)).status_code == 200


def _copy_of(original: dict[str, Any], to: str, **changed: Any) -> dict[str, Any]:
    """Another mailbox's copy of a message: same Message-ID, sender and sent time."""
    return {**original, "toRecipients": [{"emailAddress": {"name": "", "address": to}}], **changed}


def test_a_later_copy_with_the_same_sender_and_date_does_not_rewrite_the_email(
    tenant: Tenant,
) -> None:
    """A sender reusing their own Message-ID and Date cannot change what colleagues stored."""
    # GIVEN Ann's stored email from a customer, "price is 100"
    tenant.add_company("Acme", ["acme.example"])
    ann, bob = tenant.add_user("ann"), tenant.add_user("bob")
    for upn in (ann, bob):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    original = mail_from("s@acme.example", ann, "Offer: price is 100")
    tenant.stack.sim.load_messages(ann, "inbox", [original])
    tenant.sync()
    [stored] = tenant.company_emails("Acme")

    # WHEN the sender mails Bob "price is 999" under the same Message-ID, sender and sent time
    forged = _copy_of(
        original,
        bob,
        subject="Offer: price is 999",
        bodyPreview="Offer: price is 999",
        body={"contentType": "text", "content": "We agree on 999."},
        receivedDateTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    tenant.stack.sim.load_messages(bob, "inbox", [forged])
    tenant.sync()

    # THEN everyone, the list included, still reads what Ann received
    [listed] = tenant.company_emails("Acme")
    for upn in (ann, bob):
        seen = tenant.stack.call("GET", f"emails/{stored['id']}", tenant.token(upn)).json()
        assert (seen["subject"], seen["body"]["content"]) == (original["subject"],) * 2
    assert listed["subject"] == "Offer: price is 100"


def test_the_senders_bcc_list_is_shown_to_the_sender_alone(tenant: Tenant) -> None:
    """A colleague in To does not see the sender's Bcc list or the company only it reaches."""
    # GIVEN Cat's email to a customer and to Dan, with a rival in Bcc; Dan's copy syncs first
    tenant.add_company("Acme", ["acme.example"])
    rival = tenant.add_company("Rival", ["rival.example"])
    cat, dan = tenant.add_user("cat"), tenant.add_user("dan")
    for upn in (cat, dan):
        tenant.stack.connect_mail(tenant.token(upn)).raise_for_status()
    inbox_copy = mail_from(cat, "buyer@acme.example", "quote")
    inbox_copy["toRecipients"].append({"emailAddress": {"name": "", "address": dan}})
    bcc = [{"emailAddress": {"name": "", "address": "spy@rival.example"}}]
    tenant.stack.sim.load_messages(dan, "inbox", [inbox_copy])
    tenant.sync()

    # WHEN Cat's Sent Items copy, which carries the Bcc list, syncs too
    tenant.stack.sim.load_messages(cat, "sentitems", [{**inbox_copy, "bccRecipients": bcc}])
    tenant.sync()

    # THEN Dan sees neither the Bcc list nor the rival; Cat sees both
    [stored] = tenant.company_emails("Acme")
    seen = {
        upn: tenant.stack.call("GET", f"emails/{stored['id']}", tenant.token(upn)).json()
        for upn in (cat, dan)
    }
    assert seen[dan]["recipients"]["bcc"] == []
    assert rival not in seen[dan]["companyIds"]
    assert seen[cat]["recipients"]["bcc"] == [{"name": "", "address": "spy@rival.example"}]
    assert rival in seen[cat]["companyIds"]
