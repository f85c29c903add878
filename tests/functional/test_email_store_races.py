"""Two mailboxes saving one email at the same moment, against Azurite (BR-03)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.adapters.blobs import BlobBodyStore
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.matching.addresses import parse_address
from shared.sync.emailrows import EMAILS, INDEX, ITEMS, email_key, email_partition
from shared.sync.store import EmailStore

if TYPE_CHECKING:
    from devstack.azurite import Azurite


@pytest.fixture(scope="module")
def store(azurite: Azurite) -> tuple[EmailStore, TableEntityStore]:
    """An email store on the session's Azurite."""
    tables = TableEntityStore(TableServiceClient.from_connection_string(azurite.connection_string))
    tables.ensure_tables()
    blobs = BlobBodyStore(BlobServiceClient.from_connection_string(azurite.connection_string))
    blobs.ensure_container()
    return EmailStore(tables, blobs), tables


def _copy(message_id: str, item_id: str, received: str) -> dict[str, Any]:
    """One mailbox's copy of a message: same Message-ID, sender and sent time; its own id and
    receive time."""
    sender = {"emailAddress": {"name": "", "address": "jane@acme.example"}}
    return {
        "id": item_id,
        "internetMessageId": message_id,
        "subject": "Renewal",
        "from": sender,
        "sender": sender,
        "toRecipients": [{"emailAddress": {"name": "", "address": "ann@vendor.example"}}],
        "receivedDateTime": received,
        "sentDateTime": "2024-05-01T09:59:00Z",
        "body": {"contentType": "text", "content": "hello"},
    }


def _save_at_once(emails: EmailStore, tenant: str, copies: list[tuple[str, set[str], Any]]) -> None:
    """Save each user's copy from its own thread, all released at the same moment."""
    start = threading.Barrier(len(copies))
    participants = [a for a in (parse_address("jane@acme.example"),) if a is not None]

    def save(user: str, companies: set[str], message: dict[str, Any]) -> None:
        start.wait()
        emails.save(
            tenant_id=tenant,
            user_id=user,
            connection=f"conn-{user}",
            message=message,
            participants=participants,
            company_ids=frozenset(companies),
        )

    threads = [threading.Thread(target=save, args=copy) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_two_mailboxes_saving_one_email_at_once_leave_one_row_and_one_index_entry(
    store: tuple[EmailStore, TableEntityStore],
) -> None:
    """Racing saves of two copies keep one sort time, every company, one entry per list."""
    emails, tables = store
    for _ in range(8):
        # GIVEN two users' copies of one email, received a minute apart, matched differently
        tenant = str(uuid.uuid4())
        message_id = f"<{uuid.uuid4()}@acme.example>"
        copies = [
            ("ann", {"acme"}, _copy(message_id, "item-a", "2024-05-01T10:00:00Z")),
            ("ben", {"globex"}, _copy(message_id, "item-b", "2024-05-01T10:01:00Z")),
        ]

        # WHEN both mailboxes' workers save at the same moment
        _save_at_once(emails, tenant, copies)

        # THEN one row holds both companies and holders, and each list has the email once
        key = email_key(tenant, message_id, "", "")
        row = tables.get(EMAILS, email_partition(tenant, key), key)
        assert row is not None
        assert str(row["companyIds"]) == '["acme", "globex"]'
        assert sorted(str(h["userId"]) for h in emails.holders(tenant, key)) == ["ann", "ben"]
        for company in ("acme", "globex"):
            listed = list(tables.list_partition(INDEX, table_key(tenant, company)))
            assert [r["emailKey"] for r in listed] == [key]
        inbox, _ = emails.inbox_page(tenant, size=10, token=None)
        assert [r["emailKey"] for r in inbox] == [key]


def _remove(emails: EmailStore, tenant: str, how: str) -> None:
    """Take ann's copy away, by unlinking her item or by a purge batch of her mailbox."""
    if how == "unlink":
        emails.unlink(tenant_id=tenant, user_id="ann", connection="conn-ann", item_id="item-a")
    else:
        emails.release_batch(
            tenant_id=tenant,
            user_id="ann",
            connection="conn-ann",
            size=10,
            before=datetime.now(UTC),
        )


def _assert_ben_keeps(emails: EmailStore, tables: TableEntityStore, tenant: str, key: str) -> None:
    """Ben's copy is whole and listed: email, body, holder, item, company and inbox rows."""
    email = emails.get_email(tenant, key)
    assert email is not None
    assert email["body"] == "hello"
    assert [str(h["userId"]) for h in emails.holders(tenant, key)] == ["ben"]
    assert tables.get(ITEMS, "conn-ben", table_key("item-b")) is not None
    listed = list(tables.list_partition(INDEX, table_key(tenant, "acme")))
    assert [r["emailKey"] for r in listed] == [key]
    inbox, _ = emails.inbox_page(tenant, size=10, token=None)
    assert [r["emailKey"] for r in inbox] == [key]


@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_racing_a_save_of_the_same_email_keeps_it_for_the_saver(
    store: tuple[EmailStore, TableEntityStore], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Ben's save between ann's removal reading the holders and deleting keeps his email."""
    emails, tables = store
    # GIVEN ann alone holding an email, and ben's worker saving his copy right after ann's
    # removal read the holders
    tenant, message_id = str(uuid.uuid4()), f"<{uuid.uuid4()}@acme.example>"
    _save_at_once(
        emails, tenant, [("ann", {"acme"}, _copy(message_id, "item-a", "2024-05-01T10:00:00Z"))]
    )
    read = emails.holders

    def holders_then_ben_saves(tenant_id: str, key: str) -> list[Any]:
        found = read(tenant_id, key)
        monkeypatch.setattr(emails, "holders", read)
        ben = ("ben", {"acme"}, _copy(message_id, "item-b", "2024-05-01T10:00:00Z"))
        _save_at_once(emails, tenant, [ben])
        return found

    monkeypatch.setattr(emails, "holders", holders_then_ben_saves)

    # WHEN ann's copy is taken away
    _remove(emails, tenant, how)

    # THEN the email stays for ben, whole and listed
    _assert_ben_keeps(emails, tables, tenant, email_key(tenant, message_id, "", ""))


@pytest.mark.parametrize("how", ["unlink", "purge"])
def test_removal_and_save_at_once_never_leave_a_holder_without_its_email(
    store: tuple[EmailStore, TableEntityStore], how: str
) -> None:
    """Threads racing ann's removal and ben's save leave ben a whole, listed email every time."""
    emails, tables = store
    for _ in range(8):
        # GIVEN ann alone holding an email
        tenant, message_id = str(uuid.uuid4()), f"<{uuid.uuid4()}@acme.example>"
        ann = ("ann", {"acme"}, _copy(message_id, "item-a", "2024-05-01T10:00:00Z"))
        _save_at_once(emails, tenant, [ann])
        start = threading.Barrier(2)
        ben = ("ben", {"acme"}, _copy(message_id, "item-b", "2024-05-01T10:00:00Z"))
        threads = [
            threading.Thread(target=_after, args=(start, _remove, emails, tenant, how)),
            threading.Thread(target=_after, args=(start, _save_at_once, emails, tenant, [ben])),
        ]

        # WHEN ann's removal and ben's save run at the same moment
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # THEN ben's copy is whole and listed
        _assert_ben_keeps(emails, tables, tenant, email_key(tenant, message_id, "", ""))


def _after(start: threading.Barrier, work: Any, *args: Any) -> None:
    """Wait for the other thread, then do the work."""
    start.wait()
    work(*args)
