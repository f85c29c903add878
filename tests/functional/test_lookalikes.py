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
