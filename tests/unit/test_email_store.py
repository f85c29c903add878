"""Unit tests for shared.sync.store with in-memory tables and blobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.tablelimits import MAX_STRING_BYTES, key_is_valid, string_fits, table_key
from shared.errors import ValidationError
from shared.matching.addresses import Address, parse_address
from shared.sync.connections import connection_key
from shared.sync.emailrows import (
    EMAILS,
    HOLDERS,
    INBOX,
    INDEX,
    ITEM_TOMBSTONE_PREFIX,
    ITEMS,
    TOMBSTONES,
    email_key,
)
from shared.sync.store import EmailDeletedError, EmailStore, KeptMessage
from tests.unit.fakes import FakeBlobs, FakeTables

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
ALICE, BOB = "user-alice", "user-bob"
ALICE_CONNECTION = connection_key(TENANT, ALICE, "mail")
BOB_CONNECTION = connection_key(TENANT, BOB, "mail")


def _recipient(address: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"name": name, "address": address}}


def _message(item_id: str = "AAMkAD-1", **fields: Any) -> dict[str, Any]:
    """A kept Graph message with customer participants; fields override the defaults."""
    message: dict[str, Any] = {
        "id": item_id,
        "internetMessageId": "<CAF/ab#1?x@mail.customer.example>",
        "conversationId": "conv-1",
        "subject": "Renewal",
        "bodyPreview": "Hello",
        "body": {"contentType": "html", "content": "<p>Hello</p>"},
        "from": _recipient("jane@customer.example", "Jane"),
        "toRecipients": [_recipient("alice@vendor.example", "Alice")],
        "sentDateTime": "2024-05-01T10:00:00Z",
        "receivedDateTime": "2024-05-01T10:00:05Z",
        "parentFolderId": "inbox-id",
        "hasAttachments": False,
    }
    message.update(fields)
    return message


def _participants(*values: str) -> list[Address]:
    parsed = [parse_address(value) for value in values]
    return [address for address in parsed if address is not None]


@pytest.fixture
def tables() -> FakeTables:
    return FakeTables()


@pytest.fixture
def blobs() -> FakeBlobs:
    return FakeBlobs()


@pytest.fixture
def store(tables: FakeTables, blobs: FakeBlobs) -> EmailStore:
    return EmailStore(tables, blobs)  # type: ignore[arg-type]


def _save(
    store: EmailStore,
    message: dict[str, Any],
    *,
    user: str = ALICE,
    connection: str = ALICE_CONNECTION,
    companies: frozenset[str] = frozenset({"acme"}),
) -> bool:
    return store.save(
        tenant_id=TENANT,
        user_id=user,
        connection=connection,
        message=message,
        participants=_participants("jane@customer.example", "alice@vendor.example"),
        company_ids=companies,
    )


def test_email_key_same_message_id_in_tenant_gives_same_key():
    """Copies of one message in two mailboxes of a tenant share a key, whitespace ignored."""
    # GIVEN one Message-ID as seen in two mailboxes, once with surrounding whitespace
    message_id = "<abc@customer.example>"

    # WHEN keys are computed for both copies
    first = email_key(TENANT, message_id, ALICE_CONNECTION, "item-a")
    second = email_key(TENANT, f"  {message_id}\r\n", BOB_CONNECTION, "item-b")

    # THEN they are equal and make a valid hex row key
    assert first == second
    assert len(first) == 64
    assert key_is_valid(first)


def test_email_key_other_tenant_gives_other_key():
    """The same Message-ID in another tenant is another email."""
    # GIVEN one Message-ID in two tenants

    # WHEN keys are computed
    ours = email_key(TENANT, "<abc@customer.example>", ALICE_CONNECTION, "item-a")
    theirs = email_key(OTHER_TENANT, "<abc@customer.example>", ALICE_CONNECTION, "item-a")

    # THEN they differ
    assert ours != theirs


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_email_key_without_message_id_is_per_connection(missing):
    """Without a Message-ID the key is per connection and item, never shared across users."""
    # GIVEN a message without a usable Message-ID, with the same item id in two connections

    # WHEN keys are computed for each connection, and again for the first
    alice = email_key(TENANT, missing, ALICE_CONNECTION, "item-1")
    bob = email_key(TENANT, missing, BOB_CONNECTION, "item-1")
    again = email_key(TENANT, missing, ALICE_CONNECTION, "item-1")

    # THEN the connections get different keys and the key is stable
    assert alice != bob
    assert alice == again
    assert alice != email_key(TENANT, missing, ALICE_CONNECTION, "item-2")


def test_save_small_message_is_stored_inline(store, tables, blobs):
    """A message that fits is stored in its row, readable back without blobs."""
    # GIVEN a small message
    message = _message()

    # WHEN it is saved and read back
    created = _save(store, message)
    key = email_key(TENANT, message["internetMessageId"], ALICE_CONNECTION, message["id"])
    stored = store.get_email(TENANT, key)

    # THEN it is new, inline, and every key written is valid
    assert created is True
    assert blobs.blobs == {}
    assert stored is not None
    assert stored["body"] == "<p>Hello</p>"
    assert stored["bodyType"] == "html"
    assert json.loads(stored["companyIds"]) == ["acme"]
    for table in (EMAILS, HOLDERS, ITEMS, INDEX):
        for row in tables.rows(table):
            assert key_is_valid(row["PartitionKey"])
            assert key_is_valid(row["RowKey"])


def test_save_large_body_moves_to_blob_and_reads_back_whole(store, tables, blobs):
    """A 200,000-character body goes to a blob and get_email returns it whole (BR-12)."""
    # GIVEN a message whose body is far over the property limit
    body = "<p>" + "x" * 199_993 + "</p>"
    message = _message(body={"contentType": "html", "content": body})

    # WHEN it is saved and read back
    _save(store, message)
    key = email_key(TENANT, message["internetMessageId"], ALICE_CONNECTION, message["id"])
    row = tables.rows(EMAILS)[0]
    stored = store.get_email(TENANT, key)

    # THEN the row names a blob instead of the body, and the body comes back whole
    assert "body" not in row
    assert row["bodyBlob"] in blobs.blobs
    assert blobs.blobs[row["bodyBlob"]][1] == "text/html"
    assert stored is not None
    assert len(stored["body"]) == 200_000
    assert stored["body"] == body
    assert "bodyBlob" not in stored


def test_save_body_at_limit_stays_inline(store, tables, blobs):
    """A 32,000-character body fits and is stored verbatim in the row (BR-12 a)."""
    # GIVEN a body of exactly the property limit in UTF-16 bytes
    body = "a" * (MAX_STRING_BYTES // 2)
    message = _message(body={"contentType": "text", "content": body})

    # WHEN it is saved
    _save(store, message)

    # THEN it stayed in the row
    assert tables.rows(EMAILS)[0]["body"] == body
    assert blobs.blobs == {}


def test_save_many_recipients_with_long_names_still_stores(store, tables, blobs):
    """500 recipients with long non-ASCII names are stored, the list moved to a blob."""
    # GIVEN a message to 500 recipients with 200-character display names
    recipients = [
        _recipient(f"person{i}@customer.example", f"Ünïcødé Person {i} " + "n" * 180)
        for i in range(500)
    ]
    message = _message(toRecipients=recipients)

    # WHEN it is saved and read back
    _save(store, message)
    key = email_key(TENANT, message["internetMessageId"], ALICE_CONNECTION, message["id"])
    row = tables.rows(EMAILS)[0]
    stored = store.get_email(TENANT, key)

    # THEN the row fits, the recipients sit in a blob, and all 500 come back
    assert "recipientsBlob" in row
    assert all(string_fits(v) for v in row.values() if isinstance(v, str))
    assert stored is not None
    to = json.loads(stored["recipients"])["to"]
    assert len(to) == 500
    assert to[499]["name"].startswith("Ünïcødé Person 499")


def test_save_same_message_from_two_users_keeps_one_email(store, tables):
    """Two holders of one message give one email row, two holder rows, one index row each."""
    # GIVEN the same message in Alice's and Bob's mailboxes, under different item ids
    alice_copy = _message("alice-item")
    bob_copy = _message("bob-item", parentFolderId="bob-inbox")

    # WHEN both are saved, Bob's copy matching one more company
    first = _save(store, alice_copy, companies=frozenset({"acme"}))
    second = _save(
        store,
        bob_copy,
        user=BOB,
        connection=BOB_CONNECTION,
        companies=frozenset({"acme", "globex"}),
    )

    # THEN there is one email, two holders, one index row per company
    assert (first, second) == (True, False)
    emails = tables.rows(EMAILS)
    assert len(emails) == 1
    assert json.loads(emails[0]["companyIds"]) == ["acme", "globex"]
    holders = store.holders(TENANT, emails[0]["RowKey"])
    assert sorted((h["userId"], h["itemId"]) for h in holders) == [
        (ALICE, "alice-item"),
        (BOB, "bob-item"),
    ]
    index = tables.rows(INDEX)
    assert sorted(row["PartitionKey"] for row in index) == [f"{TENANT}|acme", f"{TENANT}|globex"]
    assert {row["emailKey"] for row in index} == {emails[0]["RowKey"]}
    assert len(tables.rows(ITEMS)) == 2


def test_save_again_by_same_user_is_idempotent(store, tables):
    """Saving a message its holder already has changes no row counts."""
    # GIVEN a saved message
    _save(store, _message())
    counts = {t: len(tables.rows(t)) for t in (EMAILS, HOLDERS, ITEMS, INDEX)}

    # WHEN it is saved again
    created = _save(store, _message())

    # THEN it is not new and nothing was added
    assert created is False
    assert {t: len(tables.rows(t)) for t in (EMAILS, HOLDERS, ITEMS, INDEX)} == counts


def test_company_index_lists_newest_first(store):
    """A company's emails page newest first, whatever order they were saved in."""
    # GIVEN messages sent at various times, saved out of order, around digit-count boundaries
    sent = [
        "2001-09-09T01:46:40Z",
        "2024-05-01T10:00:00Z",
        "1999-12-31T23:59:59Z",
        "2001-09-09T01:46:39Z",
        "2024-05-01T11:30:00+02:00",
    ]
    for number, stamp in enumerate(sent):
        _save(
            store,
            _message(
                f"item-{number}",
                internetMessageId=f"<m{number}@x>",
                sentDateTime=stamp,
                receivedDateTime=stamp,
            ),
        )

    # WHEN the company's first page is read
    rows, token = store.company_page(TENANT, "acme", size=10, token=None)

    # THEN the rows come newest first
    assert token is None
    assert [row["sentDateTime"] for row in rows] == [
        "2024-05-01T10:00:00Z",
        "2024-05-01T11:30:00+02:00",
        "2001-09-09T01:46:40Z",
        "2001-09-09T01:46:39Z",
        "1999-12-31T23:59:59Z",
    ]


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00Z", "1601-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]
)
def test_company_index_places_pre_1970_dates_last(store, stamp):
    """A message with a placeholder or pre-1970 date sorts after every real one."""
    # GIVEN a recent message and one with a date before 1970
    _save(store, _message("recent", internetMessageId="<recent@x>"))
    _save(
        store,
        _message("old", internetMessageId="<old@x>", sentDateTime=stamp, receivedDateTime=stamp),
    )

    # WHEN the company's first page is read
    rows, _ = store.company_page(TENANT, "acme", size=10, token=None)

    # THEN the old one is last
    assert [row["sentDateTime"] for row in rows] == ["2024-05-01T10:00:00Z", stamp]


def test_company_index_clamps_future_dates_to_now(store):
    """A message dated in the future sorts as received now, so it cannot pin itself on top."""
    # GIVEN a message dated in the year 9999, then one received now
    future = "9999-12-31T00:00:00Z"
    _save(
        store,
        _message(
            "future", internetMessageId="<future@x>", sentDateTime=future, receivedDateTime=future
        ),
    )
    now = datetime.now(UTC) + timedelta(seconds=2)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    _save(
        store,
        _message("now", internetMessageId="<now@x>", sentDateTime=stamp, receivedDateTime=stamp),
    )

    # WHEN the company's first page is read
    rows, _ = store.company_page(TENANT, "acme", size=10, token=None)

    # THEN the future one is not first: it counts as received when it was stored
    assert [row["sentDateTime"] for row in rows] == [stamp, future]


def test_get_email_rejects_malformed_key(store):
    """A key that is not 64 lower-case hex digits finds nothing, without a table read."""
    # GIVEN a saved message
    _save(store, _message())

    # WHEN malformed keys are looked up
    found = [store.get_email(TENANT, key) for key in ("", "../x", "A" * 64, "0" * 63)]

    # THEN none is found
    assert found == [None, None, None, None]


def _save_many(store: EmailStore, count: int, companies: frozenset[str]) -> list[str]:
    """Save ``count`` emails a minute apart; return their keys, newest first."""
    start = datetime(2024, 5, 1, tzinfo=UTC)
    keys = []
    for number in range(count):
        stamp = (start + timedelta(minutes=number)).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = _message(
            f"item-{number}",
            internetMessageId=f"<m{number}@customer.example>",
            receivedDateTime=stamp,
        )
        _save(store, message, companies=companies)
        keys.append(email_key(TENANT, message["internetMessageId"], "", ""))
    return keys[::-1]


def _walk(fetch: Any, size: int) -> list[str]:
    """Follow continuation tokens to the end; return every email key in order."""
    seen: list[str] = []
    token = None
    for _ in range(100):
        rows, token = fetch(size=size, token=token)
        seen.extend(str(row["emailKey"]) for row in rows)
        if token is None:
            return seen
    pytest.fail("paging never ended")


def test_inbox_pages_merge_every_shard_newest_first_without_gaps(store: EmailStore) -> None:
    """The shared inbox spans 16 partitions yet pages through every email once, newest first."""
    # GIVEN 40 emails of one company, spread over the inbox shards by their keys
    keys = _save_many(store, 40, frozenset({"acme"}))

    # WHEN the inbox is read seven at a time
    seen = _walk(lambda **page: store.inbox_page(TENANT, **page), 7)

    # THEN every email comes once, in receive order, newest first
    assert seen == keys
    assert len({key[0] for key in keys}) > 1


def test_companies_page_lists_an_email_of_two_companies_once(store: EmailStore) -> None:
    """An email filed under two of the listed companies appears once in the merged list."""
    # GIVEN emails of acme and globex, one filed under both
    only_acme = _save_many(store, 3, frozenset({"acme"}))
    both = _message(
        "item-both",
        internetMessageId="<both@customer.example>",
        receivedDateTime="2024-06-01T00:00:00Z",
    )
    _save(store, both, companies=frozenset({"acme", "globex"}))

    # WHEN both companies are listed together, two at a time
    seen = _walk(lambda **page: store.companies_page(TENANT, ["globex", "acme"], **page), 2)

    # THEN the shared email comes first and once, then acme's own
    assert seen == [email_key(TENANT, "<both@customer.example>", "", ""), *only_acme]


def test_inbox_forgets_a_deleted_email(store: EmailStore) -> None:
    """When the last holder lets go of an email it leaves the shared inbox too."""
    # GIVEN one stored email
    _save(store, _message())

    # WHEN its only mailbox no longer holds it
    store.unlink(tenant_id=TENANT, user_id=ALICE, connection=ALICE_CONNECTION, item_id="AAMkAD-1")

    # THEN the inbox is empty
    assert store.inbox_page(TENANT, size=10, token=None) == ([], None)


def test_inbox_of_another_tenant_is_empty(store: EmailStore) -> None:
    """Another tenant's inbox shares no partition with this one's."""
    _save(store, _message())
    assert store.inbox_page(OTHER_TENANT, size=10, token=None) == ([], None)


@pytest.mark.parametrize(
    "token",
    ["not-base64!", "eyJhZnRlciI6IDF9", "eyJhZnRlciI6ICInIG9yIDE9MSJ9", "W10="],
)
def test_merged_page_refuses_tokens_it_did_not_issue(store: EmailStore, token: str) -> None:
    """A crafted continuation token (a number, a filter fragment, a list) is refused by name."""
    with pytest.raises(ValidationError) as raised:
        store.inbox_page(TENANT, size=5, token=token)
    assert raised.value.field == "continuationToken"


class CountingTables(FakeTables):
    """The table fake, recording each call by (method, table)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get(self, table: str, partition: str, row: str) -> dict[str, Any] | None:
        self.calls.append(("get", table))
        return super().get(table, partition, row)

    def upsert(self, table: str, entity: Any, *, replace: bool = False) -> None:
        self.calls.append(("upsert", table))
        super().upsert(table, entity, replace=replace)

    def upsert_batch(self, table: str, entities: Any) -> None:
        # As the service does, refuse a transaction over several partitions or with a row twice.
        assert len({e["PartitionKey"] for e in entities}) == 1
        assert len({e["RowKey"] for e in entities}) == len(entities)
        self.calls.append(("upsert_batch", table))
        for entity in entities:
            FakeTables.upsert(self, table, entity)

    def query(self, table: str, where: str, parameters: Any = None) -> Any:
        self.calls.append(("query", table))
        return super().query(table, where, parameters)


def _kept(*item_ids: str) -> list[KeptMessage]:
    participants = _participants("jane@customer.example", "alice@vendor.example")
    return [
        KeptMessage(
            _message(item_id, internetMessageId=f"<{item_id}@customer.example>"),
            participants,
            frozenset({"acme"}),
        )
        for item_id in item_ids
    ]


def _save_page(store: EmailStore, kept: list[KeptMessage]) -> list[Any]:
    return store.save_page(tenant_id=TENANT, user_id=ALICE, connection=ALICE_CONNECTION, kept=kept)


def test_save_page_writes_items_in_one_transaction_and_reads_item_tombstones_once():
    """A page of three kept messages: one items transaction, one tombstone query, no item reads."""
    # GIVEN a store counting its table calls
    tables = CountingTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]

    # WHEN a page of three kept messages is saved
    outcomes = _save_page(store, _kept("m1", "m2", "m3"))

    # THEN all three are new and linked, their items went in one batch, the item tombstones
    # were one query, and the only tombstone reads are each email's check before and after
    assert outcomes == [True, True, True]
    assert len(tables.rows(ITEMS)) == 3
    assert tables.calls.count(("upsert_batch", ITEMS)) == 1
    assert ("upsert", ITEMS) not in tables.calls
    assert tables.calls.count(("query", TOMBSTONES)) == 1
    assert tables.calls.count(("get", TOMBSTONES)) == 6


def test_save_page_refuses_a_deleted_item_and_stores_the_rest():
    """A mailbox item deleted in the product is refused; the page's other messages are stored."""
    # GIVEN m2 deleted in the product earlier (its item tombstone)
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    stone = {
        "PartitionKey": ITEM_TOMBSTONE_PREFIX + ALICE_CONNECTION,
        "RowKey": table_key("m2"),
        "emailKey": "k",
    }
    tables.upsert(TOMBSTONES, stone)

    # WHEN a page with m1, m2 and m3 is saved
    outcomes = _save_page(store, _kept("m1", "m2", "m3"))

    # THEN m2 is refused as deleted and only m1 and m3 are stored
    assert outcomes[0] is True
    assert isinstance(outcomes[1], EmailDeletedError)
    assert outcomes[2] is True
    assert sorted(row["itemId"] for row in tables.rows(ITEMS)) == ["m1", "m3"]
    assert len(tables.rows(EMAILS)) == 2


def test_save_page_delete_landing_before_the_items_transaction_leaves_nothing_behind():
    """A delete that runs after the holder is written but before the item is leaves no row."""
    # GIVEN a delete of m1's email that lands just as the page's items are written: it sees
    # the holder, so it deletes the holder and the (not yet written) item
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    key = email_key(TENANT, "<m1@customer.example>", ALICE_CONNECTION, "m1")
    raced: list[int] = []

    def delete_first(operation: str, table: str, _: object) -> None:
        if table == ITEMS and operation == "upsert" and not raced:
            raced.append(store.delete_email(TENANT, key))

    tables.fail = delete_first

    # WHEN the page is saved
    outcomes = _save_page(store, _kept("m1", "m2"))

    # THEN m1 is refused as deleted and no row of it is left, not even the item written after
    # the delete; m2 is stored
    assert raced == [1]
    assert isinstance(outcomes[0], EmailDeletedError)
    assert outcomes[1] is True
    assert [row["itemId"] for row in tables.rows(ITEMS)] == ["m2"]
    assert [row["itemId"] for row in tables.rows(HOLDERS)] == ["m2"]
    assert len(tables.rows(EMAILS)) == 1
    assert {row["emailKey"] for row in tables.rows(INDEX)} != {key}


def test_save_raises_for_a_deleted_item():
    """The single-message save raises EmailDeletedError for an item deleted in the product."""
    # GIVEN an item tombstone for the message
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    stone = {"PartitionKey": ITEM_TOMBSTONE_PREFIX + ALICE_CONNECTION, "RowKey": table_key("m1")}
    tables.upsert(TOMBSTONES, stone)

    # WHEN it is saved, THEN it is refused and nothing is written
    with pytest.raises(EmailDeletedError):
        _save(store, _kept("m1")[0].message)  # type: ignore[arg-type]
    assert tables.rows(EMAILS) == []


def test_save_page_writes_a_company_index_partition_in_one_transaction():
    """Four kept messages of one company: their company index rows go in one transaction."""
    # GIVEN a store counting its table calls
    tables = CountingTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]

    # WHEN a page of four kept messages of the company acme is saved
    outcomes = _save_page(store, _kept("m1", "m2", "m3", "m4"))

    # THEN each has its index row, written in one transaction, and none was written alone
    assert outcomes == [True] * 4
    assert len(tables.rows(INDEX)) == 4
    assert tables.calls.count(("upsert_batch", INDEX)) == 1
    assert ("upsert", INDEX) not in tables.calls
    assert ("upsert", INBOX) not in tables.calls


def test_save_page_with_one_email_twice_writes_its_index_rows_once():
    """Two items of one email in a page (same Message-ID) give one email and one index row."""
    # GIVEN two kept items carrying the same internetMessageId
    tables = CountingTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    participants = _participants("jane@customer.example", "alice@vendor.example")
    kept = [
        KeptMessage(_message(item_id), participants, frozenset({"acme"}))
        for item_id in ("copy-1", "copy-2")
    ]

    # WHEN the page is saved
    outcomes = _save_page(store, kept)

    # THEN both are linked, to one email with one index row and one inbox row
    assert sorted(outcome is True for outcome in outcomes) == [False, True]
    assert len(tables.rows(EMAILS)) == 1
    assert len(tables.rows(ITEMS)) == 2
    assert len(tables.rows(INDEX)) == 1
    assert len(tables.rows(INBOX)) == 1


@pytest.mark.parametrize("batch", [1, 10])
def test_purging_one_email_held_in_two_folders_counts_it_once(batch: int) -> None:
    """A copy sent to oneself sits in two folders: a purge removes and counts the email once."""
    # GIVEN Alice's mailbox holding one email as two items, in Inbox and in Sent Items
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    assert _save(store, _message("m1", parentFolderId="inbox-id"))
    _save(store, _message("m2", parentFolderId="sent-id"))
    assert len(tables.rows(EMAILS)) == 1
    assert len(tables.rows(ITEMS)) == 2

    # WHEN her mailbox is purged in batches of the given size until no item is left
    totals = _purge(store, batch)

    # THEN the email, its holder and both items are gone, and it is counted removed once
    assert totals == {"removed": 1}
    assert tables.rows(EMAILS) == []
    assert tables.rows(HOLDERS) == []
    assert tables.rows(ITEMS) == []


PURGED = datetime(2024, 5, 2, tzinfo=UTC)
"""When the mailbox's purge was asked for: after the default message was received."""


def _purge(store: EmailStore, batch: int) -> dict[str, int]:
    """Release Alice's mailbox batch by batch until the walk ends; return the summed counts."""
    totals: dict[str, int] = {}
    walked: str | None = ""
    while walked is not None:
        counts, walked = store.release_batch(
            tenant_id=TENANT,
            user_id=ALICE,
            connection=ALICE_CONNECTION,
            size=batch,
            before=PURGED,
            after=walked,
        )
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
    return totals


@pytest.mark.parametrize("batch", [1, 2, 10])
def test_purging_keeps_mail_received_after_the_purge_was_asked_for(batch: int) -> None:
    """Mail received at or after the watermark stays, and the walk past it still ends."""
    # GIVEN Alice's mailbox with one mail from before the purge and three from after it
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    _save(store, _message("old"))
    for number in range(3):
        stamp = (PURGED + timedelta(minutes=number)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = {"internetMessageId": f"<new-{number}@mail.customer.example>"}
        _save(store, _message(f"new{number}", receivedDateTime=stamp, **fields))

    # WHEN her mailbox is purged in batches of the given size
    totals = _purge(store, batch)

    # THEN only the old mail went, and the new ones keep their email and item rows
    assert totals == {"removed": 1}
    assert sorted(row["itemId"] for row in tables.rows(ITEMS)) == ["new0", "new1", "new2"]
    assert len(tables.rows(EMAILS)) == 3


def test_purging_an_item_stored_before_items_kept_their_time_uses_its_emails_time() -> None:
    """An item row without ``receivedAt`` is judged by its email's received time."""
    # GIVEN an old-style item of a mail received after the purge
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    _save(store, _message("late", receivedDateTime="2024-05-03T00:00:00Z"))
    (item,) = tables.rows(ITEMS)
    tables.upsert(ITEMS, {k: v for k, v in item.items() if k != "receivedAt"}, replace=True)

    # WHEN the mailbox is purged
    totals = _purge(store, 10)

    # THEN the mail stays
    assert totals == {}
    assert len(tables.rows(ITEMS)) == 1


def test_purging_keeps_an_email_whose_copy_in_another_folder_came_after_the_purge() -> None:
    """An older copy goes, but the email stays linked through the newer copy."""
    # GIVEN one email in two folders of Alice's mailbox, received before and after the purge
    tables = FakeTables()
    store = EmailStore(tables, FakeBlobs())  # type: ignore[arg-type]
    _save(store, _message("a-old", parentFolderId="archive-id"))
    _save(store, _message("z-new", receivedDateTime="2024-05-02T00:00:01Z"))

    # WHEN her mailbox is purged one item at a time
    totals = _purge(store, 1)

    # THEN the email, its holder and the newer item stay; only the older item went
    assert totals == {}
    assert [row["itemId"] for row in tables.rows(ITEMS)] == ["z-new"]
    assert len(tables.rows(EMAILS)) == 1
    assert len(tables.rows(HOLDERS)) == 1
