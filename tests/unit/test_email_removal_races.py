"""Unit tests for removals (unlink, purge) of an email racing another mailbox's save of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from shared.sync.emailrows import EMAILS, HOLDERS, INBOX, INDEX, ITEMS, email_key
from shared.sync.store import EmailStore
from tests.unit.fakes import FakeBlobs, FakeTables
from tests.unit.test_email_store import (
    ALICE,
    ALICE_CONNECTION,
    BOB,
    BOB_CONNECTION,
    TENANT,
    _message,
    _save,
)

if TYPE_CHECKING:
    from collections.abc import Callable

MESSAGE_ID = "<CAF/ab#1?x@mail.customer.example>"
KEY = email_key(TENANT, MESSAGE_ID, "", "")
BIG_BODY = "x" * 200_000


@pytest.fixture
def tables() -> FakeTables:
    return FakeTables()


@pytest.fixture
def blobs() -> FakeBlobs:
    return FakeBlobs()


@pytest.fixture
def store(tables: FakeTables, blobs: FakeBlobs) -> EmailStore:
    return EmailStore(tables, blobs)  # type: ignore[arg-type]


def _remove(store: EmailStore, how: str) -> None:
    """Take Alice's copy away, by unlinking its item or by a purge batch of her mailbox."""
    if how == "unlink":
        store.unlink(tenant_id=TENANT, user_id=ALICE, connection=ALICE_CONNECTION, item_id="a-1")
    else:
        store.release_batch(
            tenant_id=TENANT,
            user_id=ALICE,
            connection=ALICE_CONNECTION,
            size=10,
            before=datetime.now(UTC),
        )


def _bob_saves(store: EmailStore) -> None:
    _save(store, _bob_copy(), user=BOB, connection=BOB_CONNECTION)


def _bob_copy() -> dict[str, Any]:
    return _message("b-7", receivedDateTime="2024-05-01T10:00:05Z", body=_body())


def _body() -> dict[str, str]:
    return {"contentType": "text", "content": BIG_BODY}


def _once(tables: FakeTables, when: Callable[[str, str, Any], bool], then: Callable[[], None]):
    """Run ``then`` once, just before the first table write that ``when`` picks."""

    def hook(operation: str, table: str, what: Any) -> None:
        if when(operation, table, what):
            tables.fail = None
            then()
            tables.fail = hook

    tables.fail = hook


def _assert_bob_keeps_the_email(store: EmailStore, tables: FakeTables) -> None:
    """Bob still holds a whole, listed email; Alice's links are gone."""
    email = store.get_email(TENANT, KEY)
    assert email is not None
    assert email["body"] == BIG_BODY
    assert [row["userId"] for row in tables.rows(HOLDERS)] == [BOB]
    assert [row["itemId"] for row in tables.rows(ITEMS)] == ["b-7"]
    assert [row["emailKey"] for row in tables.rows(INDEX)] == [KEY]
    assert [row["emailKey"] for row in tables.rows(INBOX)] == [KEY]


@pytest.fixture
def alice_holds(store: EmailStore) -> None:
    """Alice alone holds the email, whose body lives in a blob."""
    _save(store, _message("a-1", body=_body()))


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_keeps_email_bob_saves_after_the_holders_were_read(
    store: EmailStore, tables: FakeTables, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Bob's whole save between the removal's holder query and its deletes keeps the email."""
    # GIVEN Bob's worker saving his copy right after Alice's removal read the holders
    read = store.holders

    def holders_then_bob_saves(tenant_id: str, key: str) -> list[Any]:
        found = read(tenant_id, key)
        monkeypatch.setattr(store, "holders", read)
        _bob_saves(store)
        return found

    monkeypatch.setattr(store, "holders", holders_then_bob_saves)

    # WHEN Alice's copy is taken away
    _remove(store, how)

    # THEN the email stays for Bob, whole and listed
    _assert_bob_keeps_the_email(store, tables)


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
@pytest.mark.parametrize("before", [INDEX, INBOX, EMAILS])
def test_removal_keeps_email_bob_saves_before_one_of_its_deletes(
    store: EmailStore, tables: FakeTables, how: str, before: str
) -> None:
    """Bob's save landing before the index, inbox or email delete keeps the email indexed."""
    # GIVEN Bob's worker saving his copy just before the removal deletes from the given table
    _once(
        tables, lambda op, table, _: op == "delete" and table == before, lambda: _bob_saves(store)
    )

    # WHEN Alice's copy is taken away
    _remove(store, how)

    # THEN the email stays for Bob, whole and listed
    _assert_bob_keeps_the_email(store, tables)


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_between_bobs_holder_and_email_writes_keeps_the_email(
    store: EmailStore, tables: FakeTables, how: str
) -> None:
    """A removal running after Bob's holder row is written, before his email write, keeps it."""
    # GIVEN Alice's removal running just before Bob's save writes the email row
    _once(
        tables,
        lambda op, table, _: op == "update" and table == EMAILS,
        lambda: _remove(store, how),
    )

    # WHEN Bob's worker saves his copy
    _bob_saves(store)

    # THEN the email stays for Bob, whole and listed
    _assert_bob_keeps_the_email(store, tables)


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_after_bob_read_the_email_lets_his_save_store_it_again(
    store: EmailStore, tables: FakeTables, how: str
) -> None:
    """A whole removal between Bob's read of the email and his holder write: he stores it anew."""
    # GIVEN Alice's removal running after Bob's save read the row, before it links him
    _once(
        tables,
        lambda op, table, _: op == "upsert" and table == HOLDERS,
        lambda: _remove(store, how),
    )

    # WHEN Bob's worker saves his copy
    created = _save(store, _bob_copy(), user=BOB, connection=BOB_CONNECTION)

    # THEN his save created the email again, whole and listed
    assert created is True
    _assert_bob_keeps_the_email(store, tables)


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_save_right_after_the_email_delete_keeps_its_new_blobs(
    store: EmailStore,
    tables: FakeTables,
    blobs: FakeBlobs,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Bob storing the email again after its row went keeps blobs the removal deletes next."""
    # GIVEN Bob's worker saving his copy after the removal deleted the email row, just before
    # it deletes the old row's body blob
    delete = blobs.delete

    def bob_saves_first(name: str) -> None:
        monkeypatch.setattr(blobs, "delete", delete)
        _bob_saves(store)
        delete(name)

    monkeypatch.setattr(blobs, "delete", bob_saves_first)

    # WHEN Alice's copy is taken away
    _remove(store, how)

    # THEN Bob's new row is whole with its body blob, and the old blob is gone
    _assert_bob_keeps_the_email(store, tables)
    assert len(blobs.blobs) == 1


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_without_a_racing_save_deletes_everything(
    store: EmailStore, tables: FakeTables, blobs: FakeBlobs, how: str
) -> None:
    """With no one saving meanwhile, Alice's last copy takes the email, index and blobs."""
    # WHEN Alice's only copy is taken away
    _remove(store, how)

    # THEN nothing of the email is left
    for table in (EMAILS, HOLDERS, ITEMS, INDEX, INBOX):
        assert tables.rows(table) == []
    assert blobs.blobs == {}


def test_look_alike_found_after_linking_takes_its_holder_row_back(
    store: EmailStore, tables: FakeTables
) -> None:
    """A look-alike that loses the row to the real email after linking leaves no holder there."""
    # GIVEN Alice's real email created just before Bob's look-alike (another sent time) would
    # create the row his worker found missing
    _once(
        tables,
        lambda op, table, _: op == "create" and table == EMAILS,
        lambda: _save(store, _message("a-1")),
    )

    # WHEN Bob's worker saves the look-alike
    _save(
        store,
        _message("b-7", sentDateTime="2024-05-02T08:00:00Z"),
        user=BOB,
        connection=BOB_CONNECTION,
    )

    # THEN only Alice holds the real email; Bob's look-alike is stored apart
    assert [row["userId"] for row in store.holders(TENANT, KEY)] == [ALICE]
    assert len(tables.rows(EMAILS)) == 2
    assert len(tables.rows(HOLDERS)) == 2


@pytest.mark.usefixtures("alice_holds")
@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_racing_a_change_without_a_new_holder_still_deletes(
    store: EmailStore, tables: FakeTables, blobs: FakeBlobs, how: str
) -> None:
    """A company dropped from the email while it is removed changes its ETag, not its fate."""
    # GIVEN a company dropped from Alice's email after the removal read it, before its deletes
    _once(
        tables,
        lambda op, table, _: op == "delete" and table == INDEX,
        lambda: store.forget_company(TENANT, "acme"),
    )

    # WHEN Alice's only copy is taken away
    _remove(store, how)

    # THEN nothing of the email is left
    for table in (EMAILS, HOLDERS, ITEMS, INDEX, INBOX):
        assert tables.rows(table) == []
    assert blobs.blobs == {}
