"""Unit tests for what the stored email shows when several mailboxes hold copies of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.read.views import email_json
from shared.sync.emailrows import EMAILS, INBOX, INDEX, email_key
from shared.sync.store import EmailStore
from tests.unit.fakes import FakeBlobs, FakeTables
from tests.unit.test_email_store import (
    ALICE,
    ALICE_CONNECTION,
    BOB,
    BOB_CONNECTION,
    TENANT,
    _message,
    _participants,
    _recipient,
    _save,
)

KEY = email_key(TENANT, "<CAF/ab#1?x@mail.customer.example>", "", "")
BIG = 200_000


@pytest.fixture
def tables() -> FakeTables:
    return FakeTables()


@pytest.fixture
def store(tables: FakeTables) -> EmailStore:
    return EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]


def _rewritten(item_id: str, **fields: Any) -> dict[str, Any]:
    """A copy with the first copy's sender and sent time but other content."""
    other = {
        "subject": "Offer: price is 999",
        "bodyPreview": "We agree on 999.",
        "body": {"contentType": "text", "content": "We agree on 999."},
        "from": _recipient("jane@customer.example", "Someone Else"),
        "toRecipients": [_recipient("bob@vendor.example", "Bob")],
        "receivedDateTime": "2024-05-03T10:00:00Z",
    }
    return _message(item_id, **{**other, **fields})


def _listed(tables: FakeTables) -> list[tuple[str, str]]:
    return [
        (str(r["subject"]), str(r["bodyPreview"])) for r in tables.rows(INDEX) + tables.rows(INBOX)
    ]


@pytest.mark.parametrize("size", [10, BIG])
def test_later_copy_with_other_content_leaves_what_readers_see(store: EmailStore, tables, size):
    """Bob's copy reusing Alice's Message-ID, sender and sent time adds only his holder."""
    # GIVEN Alice's stored email
    body = "<p>Hello</p>".ljust(size)
    _save(store, _message("a-1", body={"contentType": "html", "content": body}))
    before = store.get_email(TENANT, KEY)
    listed = _listed(tables)

    # WHEN Bob's copy with other content and one more company is saved
    created = _save(
        store,
        _rewritten("b-7", body={"contentType": "text", "content": "999".ljust(size)}),
        user=BOB,
        connection=BOB_CONNECTION,
        companies=frozenset({"acme", "globex"}),
    )

    # THEN the email reads as before, lists as before, and only gains Bob and his company
    after = store.get_email(TENANT, KEY)
    assert created is False
    assert before is not None
    assert after is not None
    for field in ("subject", "bodyPreview", "body", "bodyType", "from", "recipients"):
        assert after[field] == before[field]
    assert json.loads(after["companyIds"]) == ["acme", "globex"]
    assert sorted(str(h["userId"]) for h in store.holders(TENANT, KEY)) == [ALICE, BOB]
    assert set(_listed(tables)) == set(listed)
    assert len(tables.rows(EMAILS)) == 1


def test_first_copy_saved_again_with_new_content_updates_the_email(store: EmailStore, tables):
    """The mailbox item that stored the email first may still change what it shows."""
    # GIVEN Alice's stored email, also held by Bob
    _save(store, _message("a-1"))
    _save(store, _message("b-7"), user=BOB, connection=BOB_CONNECTION)

    # WHEN Alice's same item is saved again with another subject
    _save(store, _message("a-1", subject="Renewal (corrected)"))

    # THEN the email and its list entries show the new subject
    after = store.get_email(TENANT, KEY)
    assert after is not None
    assert after["subject"] == "Renewal (corrected)"
    assert {subject for subject, _ in _listed(tables)} == {"Renewal (corrected)"}


def test_later_copy_saved_again_does_not_take_the_email_over(store: EmailStore, tables):
    """A later holder saving its copy twice still leaves the first copy's content."""
    # GIVEN Alice's stored email and Bob's copy with other content, saved once
    _save(store, _message("a-1"))
    _save(store, _rewritten("b-7"), user=BOB, connection=BOB_CONNECTION)

    # WHEN Bob's copy is saved again
    _save(store, _rewritten("b-7"), user=BOB, connection=BOB_CONNECTION)

    # THEN the email still shows Alice's copy
    after = store.get_email(TENANT, KEY)
    assert after is not None
    assert after["subject"] == "Renewal"
    assert {subject for subject, _ in _listed(tables)} == {"Renewal"}


def _holder(store: EmailStore, user: str) -> dict[str, Any] | None:
    return next((h for h in store.holders(TENANT, KEY) if h["userId"] == user), None)


def _shown_to(store: EmailStore, user: str) -> dict[str, Any]:
    row = store.get_email(TENANT, KEY)
    assert row is not None
    return email_json(row, _holder(store, user))


@pytest.mark.parametrize("sender_first", [False, True])
def test_bcc_of_the_senders_copy_is_shown_to_the_sender_alone(store: EmailStore, sender_first):
    """The sender's Bcc list, and a company only it reaches, stay out of other holders' view."""
    # GIVEN Alice's Sent Items copy with a rival in Bcc, and Bob's inbox copy without it
    sent = _message("a-1", bccRecipients=[_recipient("spy@rival.example", "Spy")])
    saves = [
        lambda: _save(store, _message("b-7"), user=BOB, connection=BOB_CONNECTION),
        lambda: store.save(
            tenant_id=TENANT,
            user_id=ALICE,
            connection=ALICE_CONNECTION,
            message=sent,
            participants=_participants("jane@customer.example", "spy@rival.example"),
            company_ids=frozenset({"acme", "rival"}),
            bcc_company_ids=frozenset({"rival"}),
        ),
    ]

    # WHEN both copies are saved, in either order
    for save in reversed(saves) if sender_first else saves:
        save()

    # THEN Bob sees neither the Bcc list nor the rival; Alice sees both
    bob, alice = _shown_to(store, BOB), _shown_to(store, ALICE)
    assert bob["recipients"]["bcc"] == []
    assert bob["companyIds"] == ["acme"]
    assert alice["recipients"]["bcc"] == [{"name": "Spy", "address": "spy@rival.example"}]
    assert alice["companyIds"] == ["acme", "rival"]
    assert bob["recipients"]["to"] == alice["recipients"]["to"]


def test_email_without_a_holder_row_shows_no_bcc(store: EmailStore):
    """A reader who holds no copy (an owner of its company) sees no Bcc list."""
    # GIVEN the sender's copy with a Bcc recipient
    _save(store, _message("a-1", bccRecipients=[_recipient("spy@rival.example")]))

    # WHEN someone without a copy reads it
    shown = _shown_to(store, "someone-else")

    # THEN the Bcc list is empty
    assert shown["recipients"]["bcc"] == []


def test_sender_only_copy_with_bcc_customer_shows_no_company_to_others(store: EmailStore):
    """With only the sender's copy stored, a reader without a copy sees no Bcc company."""
    # GIVEN Alice's copy whose only company is reached through Bcc
    store.save(
        tenant_id=TENANT,
        user_id=ALICE,
        connection=ALICE_CONNECTION,
        message=_message("a-1", bccRecipients=[_recipient("jane@customer.example")]),
        participants=_participants("jane@customer.example"),
        company_ids=frozenset({"acme"}),
        bcc_company_ids=frozenset({"acme"}),
    )

    # WHEN Alice and someone else read it
    # THEN only Alice is shown the company
    assert _shown_to(store, ALICE)["companyIds"] == ["acme"]
    assert _shown_to(store, "someone-else")["companyIds"] == []


def test_forgotten_company_leaves_every_readers_view(store: EmailStore):
    """A deleted company is dropped from what every reader is shown, Bcc view included."""
    # GIVEN Alice's sent copy reaching a rival only through Bcc, and Bob's copy
    store.save(
        tenant_id=TENANT,
        user_id=ALICE,
        connection=ALICE_CONNECTION,
        message=_message("a-1", bccRecipients=[_recipient("spy@rival.example")]),
        participants=_participants("jane@customer.example", "spy@rival.example"),
        company_ids=frozenset({"acme", "rival"}),
        bcc_company_ids=frozenset({"rival"}),
    )
    _save(store, _message("b-7"), user=BOB, connection=BOB_CONNECTION)

    # WHEN both companies are deleted, one after the other
    store.forget_company(TENANT, "rival")
    store.forget_company(TENANT, "acme")

    # THEN no reader is shown either
    assert _shown_to(store, ALICE)["companyIds"] == []
    assert _shown_to(store, BOB)["companyIds"] == []
