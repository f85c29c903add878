"""How kept emails are laid out in tables: table names, keys, partitions and the rows themselves.

Tables:

- ``emails``: one row per email, keyed by the SHA-256 of the tenant and ``internetMessageId``
  (or, for a message without one, of the connection and the immutable id, so those are never
  merged across users). Partitions are the tenant plus the key's first two hex digits, so a
  tenant's sync load spreads over 256 partitions.
- ``emailholders``: one row per (email, user) holding it, in the email's partition. It keeps
  what only that user's copy shows: the Bcc list (only the sender's copy has one) and the
  companies only those Bcc recipients reach. The ``emails`` row keeps no Bcc list, and names
  the companies every reader is shown (``openCompanyIds``) apart from all it is indexed under.
- ``mailboxitems``: per connection, immutable message id to email key and folder.
- ``companyemails``: per (tenant, company), one summary row per email, newest first.
- ``tenantemails``: the shared inbox, one summary row per email of the tenant, newest first, in
  16 partitions per tenant (by the key's first hex digit) so no partition takes a tenant's
  whole sync load. A page reads the head of every partition and merges them.

Every summary row of both indexes has the same row key for one email (inverted receive time,
then the email key), so a merged page of several partitions continues after one row key.

- ``emailtombstones``: what a user or admin deleted, so it never syncs back: one row per email
  key (the ``internetMessageId`` of the tenant, in the email's partition) and one per mailbox
  item (its immutable id, in a ``~i|<connection>`` partition).

A string too large for a table property (the body, a huge recipient list) moves to Blob Storage
and the row records the blob's name instead, so bodies of any size are stored whole
(:class:`EmailRows` moves them and reads them back).

Known limitations: an email stored before Bcc lists moved to the holder rows still counts the
companies of its Bcc recipients among those every reader is shown; a user holding one email in
two folders keeps the Bcc list of the copy saved last; an email is listed under a company only
a Bcc recipient reaches, to everyone who may read that company's list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import MAX_ENTITY_BYTES, entity_size, string_fits, table_key
from shared.matching.addresses import parse_address
from shared.sync.jobs import instant

if TYPE_CHECKING:
    from collections.abc import Sequence

    from shared.adapters.blobs import BlobBodyStore
    from shared.adapters.tables import Entity, TableEntityStore
    from shared.matching.addresses import Address

EMAILS = "emails"
HOLDERS = "emailholders"
ITEMS = "mailboxitems"
INDEX = "companyemails"
INBOX = "tenantemails"
TOMBSTONES = "emailtombstones"
ITEM_TOMBSTONE_PREFIX = "~i|"
BLOB_SUFFIX = "Blob"
OVERFLOW_FIELDS = (
    "body",
    "recipients",
    "subject",
    "bodyPreview",
    "from",
    "conversationId",
    "internetMessageId",
    "companyIds",
    "openCompanyIds",
)
"""Every string of an email row that outside input can make large; each may move to a blob."""
SUMMARY_ADDRESS_CHARS = 320
SUMMARY_SUBJECT_CHARS = 512
_NEVER = 9_999_999_999


def email_key(tenant_id: str, internet_message_id: object, connection: str, item_id: str) -> str:
    """Return the tenant-wide key of an email: by Message-ID when it has one, else per mailbox.

    A Message-ID that is not a string (Graph JSON of another shape) counts as none.
    """
    message_id = text(internet_message_id).strip()
    scope = f"imid\n{tenant_id}\n{message_id}" if message_id else f"item\n{connection}\n{item_id}"
    return hashlib.sha256(scope.encode("utf-8")).hexdigest()


def email_partition(tenant_id: str, key: str) -> str:
    """Return the partition of an email: the tenant spread over 256 shards."""
    return table_key(tenant_id, key[:2])


def inbox_partitions(tenant_id: str) -> list[str]:
    """Return the 16 partitions of a tenant's shared inbox."""
    return [table_key(tenant_id, "inbox", digit) for digit in "0123456789abcdef"]


def inbox_partition(tenant_id: str, key: str) -> str:
    """Return the partition of an email's summary row in its tenant's shared inbox."""
    return table_key(tenant_id, "inbox", key[0])


def index_row_key(sort_time: str, key: str) -> str:
    """Return the row key of an email's summary rows in every index: newest first, then the key."""
    # Dates before 1970 (Exchange's 0001-01-01 placeholder) or past _NEVER would make the
    # number longer than 10 digits or negative and break the lexical order, so clamp them.
    seconds = min(max(int(datetime.fromisoformat(sort_time).timestamp()), 0), _NEVER)
    return f"{_NEVER - seconds:010d}|{key}"


class EmailRows:
    """The tables and blobs kept emails live in, and the fields of a row that moved to a blob."""

    def __init__(self, tables: TableEntityStore, blobs: BlobBodyStore) -> None:
        self._tables = tables
        self._blobs = blobs

    def _company_ids(self, row: Entity | None) -> frozenset[str]:
        """Return the companies an email row is linked to, read from a blob if it moved."""
        if row is None:
            return frozenset()
        text = row.get("companyIds")
        blob_name = row.get("companyIds" + BLOB_SUFFIX)
        if text is None and blob_name:
            text = self._blobs.get_text(str(blob_name))
        return frozenset(json.loads(text or "[]"))

    def _open_company_ids(self, row: Entity | None) -> frozenset[str]:
        """Return the companies every reader of an email row is shown (not reached by Bcc)."""
        if row is None:
            return frozenset()
        text = self._field(row, "openCompanyIds")
        return frozenset(json.loads(text)) if text else self._company_ids(row)

    def _field(self, row: Entity, name: str) -> str:
        """Return a string field of an email row, read from its blob if it moved."""
        value = row.get(name)
        blob_name = row.get(name + BLOB_SUFFIX)
        if value is None and blob_name:
            value = self._blobs.get_text(str(blob_name))
        return str(value or "")

    def _shown(self, row: Entity) -> dict[str, Any]:
        """Return what an email's index rows show of it, as :func:`summary_row` reads it."""
        return {
            "subject": self._field(row, "subject"),
            "from": {"emailAddress": json.loads(self._field(row, "from") or "{}")},
            "bodyPreview": self._field(row, "bodyPreview"),
        }

    def _overflow(self, tenant_id: str, key: str, row: Entity) -> Entity:
        """Move strings that break a table limit into blobs, largest first."""
        for name in OVERFLOW_FIELDS:
            value = row.get(name)
            if isinstance(value, str) and not string_fits(value):
                row = self._to_blob(tenant_id, key, row, name)
        for name in sorted(OVERFLOW_FIELDS, key=lambda n: -len(str(row.get(n, "")))):
            if entity_size(row) <= MAX_ENTITY_BYTES:
                break
            if isinstance(row.get(name), str):
                row = self._to_blob(tenant_id, key, row, name)
        return row

    def _to_blob(self, tenant_id: str, key: str, row: Entity, name: str) -> Entity:
        generation = row.get("generation")
        folder = f"{key}/{generation}" if generation else key
        blob_name = f"{table_key(tenant_id)}/{folder}/{name}"
        content_type = (
            "text/html" if name == "body" and row.get("bodyType") == "html" else "text/plain"
        )
        self._blobs.put_text(blob_name, str(row[name]), content_type)
        moved = {k: v for k, v in row.items() if k != name}
        moved[name + BLOB_SUFFIX] = blob_name
        return moved


def text(value: object) -> str:
    """Return a Graph field that should be a string, or ``""`` when it is anything else."""
    return value if isinstance(value, str) else ""


def message_item_id(message: Mapping[str, Any]) -> str:
    """Return a message's immutable id, or ``""`` when Graph gave none or not a string."""
    return text(message.get("id"))


def internet_message_id(message: Mapping[str, Any]) -> str:
    """Return a message's ``internetMessageId`` without spaces around, ``""`` when unusable."""
    return text(message.get("internetMessageId")).strip()


def email_row(
    tenant_id: str,
    key: str,
    message: Mapping[str, Any],
    *,
    participants: Sequence[Address],
    companies: frozenset[str],
    sort_time: str,
    fingerprint: str,
) -> Entity:
    """Return the ``emails`` row of a Graph message, before any field moves to a blob.

    A field of another shape than Graph documents (a number for a string, a string for the
    body object) is stored as missing, so every property has the type its table expects.
    """
    body = message.get("body")
    body = body if isinstance(body, Mapping) else {}
    return {
        "PartitionKey": email_partition(tenant_id, key),
        "RowKey": key,
        "tenantId": tenant_id,
        "internetMessageId": internet_message_id(message),
        "conversationId": text(message.get("conversationId")),
        "subject": text(message.get("subject")),
        "bodyPreview": text(message.get("bodyPreview")),
        "bodyType": (text(body.get("contentType")) or "text").lower(),
        "body": text(body.get("content")),
        "from": json.dumps(_address(message.get("from"))),
        "recipients": json.dumps({**_recipients(message), "bcc": []}),
        "participants": len(participants),
        "sentDateTime": text(message.get("sentDateTime")),
        "receivedDateTime": text(message.get("receivedDateTime")),
        "hasAttachments": message.get("hasAttachments") is True,
        "companyIds": json.dumps(sorted(companies)),
        "sortTime": sort_time,
        "fingerprint": fingerprint,
    }


def copy_fingerprint(message: Mapping[str, Any]) -> str:
    """Return what every copy of one email shares: its sender's address and its sent time.

    Each mailbox holding an email has its own copy with the same ``from`` and ``sentDateTime``;
    a message that only reuses the Message-ID (which everyone on a thread can read in
    ``In-Reply-To``) almost never has both.
    """
    sender = _address(message.get("from")).get("address", "")
    parsed = parse_address(sender) if sender else None
    sent = instant(message.get("sentDateTime"))
    text = f"{parsed.address if parsed else sender.casefold()}\n{sent.isoformat()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def holder_bcc(message: Mapping[str, Any]) -> str:
    """Return the Bcc list of one holder's copy, as stored in its holder row.

    Only the sender's copy carries Bcc, and only its holder may see it, so it lives with the
    holder, not in the shared email row. A list too long for a table property keeps its
    addresses without names, and then as many as fit.
    """
    bcc = _recipients(message)["bcc"]
    text = json.dumps(bcc)
    if string_fits(text):
        return text
    bare = [{"name": "", "address": item["address"]} for item in bcc]
    while bare and not string_fits(text := json.dumps(bare)):
        bare = bare[: len(bare) * 9 // 10]
    return text if bare else "[]"


def _address(value: Any) -> dict[str, str]:
    email = value.get("emailAddress") if isinstance(value, Mapping) else None
    if not isinstance(email, Mapping):
        return {}
    return {"name": text(email.get("name")), "address": text(email.get("address"))}


def _recipients(message: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    lists = {"to": "toRecipients", "cc": "ccRecipients", "bcc": "bccRecipients"}
    found: dict[str, list[dict[str, str]]] = {}
    for short, name in lists.items():
        items = message.get(name)
        addresses = (_address(item) for item in (items if isinstance(items, list) else []))
        found[short] = [address for address in addresses if address]
    return found


def summary_row(key: str, row: Entity, message: Mapping[str, Any]) -> Entity:
    """Return what an email's company and inbox index rows show of it, without their keys.

    ``message`` gives the subject, sender and preview, in Graph's shape (see
    :meth:`EmailRows._shown`, which reads them from a stored row).
    """
    subject = text(message.get("subject"))
    return {
        "emailKey": key,
        "subject": subject[:SUMMARY_SUBJECT_CHARS],
        "from": json.dumps(
            {k: v[:SUMMARY_ADDRESS_CHARS] for k, v in _address(message.get("from")).items()}
        ),
        "bodyPreview": text(message.get("bodyPreview"))[:255],
        "sentDateTime": row["sentDateTime"],
        "receivedDateTime": row["receivedDateTime"],
        "hasAttachments": row["hasAttachments"],
        "internetMessageId": row["internetMessageId"][:1024],
    }
