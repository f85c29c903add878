"""Two mailboxes saving one email at the same moment, against Azurite (BR-03)."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.adapters.blobs import BlobBodyStore
from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.matching.addresses import parse_address
from shared.sync.emailrows import EMAILS, INDEX, email_key, email_partition
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
