"""Reading kept emails back for the API: index pages, one email whole, a thread's companies.

A company's list is one partition of ``companyemails``. The shared inbox and a list of several
companies merge the heads of many partitions (the inbox's 16, up to
:data:`MAX_MERGED_PARTITIONS` companies' own), which works because all summary rows of one email
share a row key; their continuation token names the list and the row key a page ended on.

A deleted company is dropped here too, from each of its emails and then from its index.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG, PAGE_RULE, decode_page_token, encode_page_token
from shared.errors import ValidationError
from shared.sync.emailrows import (
    BLOB_SUFFIX,
    EMAILS,
    INBOX,
    INDEX,
    OVERFLOW_FIELDS,
    EmailRows,
    email_key,
    email_partition,
    inbox_partitions,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from shared.adapters.tables import Entity

MERGE_WORKERS = 8
"""Partitions read at once by a merged page; below azure-core's 10 pooled connections."""
MAX_MERGED_PARTITIONS = 500


class EmailReads(EmailRows):
    """Reads kept emails and their index pages back for the API."""

    def thread_companies(
        self, tenant_id: str, internet_message_ids: Sequence[str]
    ) -> frozenset[str]:
        """Return the companies every reader of the first stored of these emails sees, or none."""
        for internet_message_id in internet_message_ids:
            key = email_key(tenant_id, internet_message_id, "", "")
            row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
            if row is not None:
                # Companies only a Bcc recipient reaches are the sender's to know, not a reply's.
                return self._open_company_ids(row)
        return frozenset()

    def company_page(
        self, tenant_id: str, company_id: str, *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of a company's email summaries, newest first."""
        where = "PartitionKey eq @pk"
        return self._tables.page(
            INDEX, where, {"pk": table_key(tenant_id, company_id)}, size=size, token=token
        )

    def inbox_page(
        self, tenant_id: str, *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of the tenant's shared inbox, newest first.

        Raises:
            ValidationError: when the continuation token is not one this store issued.
        """
        return self._merged_page(INBOX, inbox_partitions(tenant_id), size=size, token=token)

    def companies_page(
        self, tenant_id: str, company_ids: Sequence[str], *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Return one page of the emails of several companies, newest first, each email once.

        Raises:
            ValidationError: when the continuation token is not one this store issued.
        """
        partitions = [table_key(tenant_id, company_id) for company_id in sorted(set(company_ids))]
        return self._merged_page(INDEX, partitions[:MAX_MERGED_PARTITIONS], size=size, token=token)

    def _merged_page(
        self, table: str, partitions: Sequence[str], *, size: int, token: str | None
    ) -> tuple[list[Entity], str | None]:
        """Merge the heads of several partitions whose rows share one row key order.

        Each partition gives its first ``size`` rows after the cursor, so the ``size`` smallest
        keys of their union are the page; the next page starts after its last key.
        """
        after = _decode_cursor(token, table)
        where = "PartitionKey eq @pk" + (" and RowKey gt @after" if after else "")

        def head(partition: str) -> tuple[list[Entity], bool]:
            parameters = {"pk": partition, "after": after} if after else {"pk": partition}
            return self._tables.head(table, where, parameters, size=size)

        if not partitions:
            return [], None
        with ThreadPoolExecutor(max_workers=min(MERGE_WORKERS, len(partitions))) as pool:
            heads = list(pool.map(head, partitions))
        unique = {str(row["RowKey"]): row for rows, _ in heads for row in rows}
        ordered = [unique[name] for name in sorted(unique)]
        more = len(ordered) > size or any(truncated for _, truncated in heads)
        page = ordered[:size]
        return page, (_encode_cursor(str(page[-1]["RowKey"]), table) if more and page else None)

    def forget_company(self, tenant_id: str, company_id: str) -> int:
        """Drop a deleted company from its emails and its email index; return how many went.

        The emails stay (other companies or holders may need them) but no longer name the
        company, so a company later created under the same id gains no access to them and
        starts with an empty list. Each email is changed before its index row goes, so
        repeating this after a crash finishes it.
        """
        partition = table_key(tenant_id, company_id)
        rows = list(self._tables.list_partition(INDEX, partition))
        for row in rows:
            self._drop_company(tenant_id, str(row["emailKey"]), company_id)
            self._tables.delete(INDEX, partition, str(row["RowKey"]))
        return len(rows)

    def _drop_company(self, tenant_id: str, key: str, company_id: str) -> None:
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        companies = self._company_ids(row)
        if row is None or company_id not in companies:
            return
        shown = self._open_company_ids(row)
        dropped = ("companyIds" + BLOB_SUFFIX, "openCompanyIds" + BLOB_SUFFIX, ETAG)
        changed = {k: v for k, v in row.items() if k not in dropped}
        changed["companyIds"] = json.dumps(sorted(companies - {company_id}))
        changed["openCompanyIds"] = json.dumps(sorted(shown - {company_id}))
        self._tables.update(EMAILS, self._overflow(tenant_id, key, changed), etag=row[ETAG])

    def get_email(self, tenant_id: str, key: str) -> Entity | None:
        """Return a stored email with every moved field read back from Blob Storage."""
        if len(key) != 64 or any(ch not in "0123456789abcdef" for ch in key):
            return None
        row = self._tables.get(EMAILS, email_partition(tenant_id, key), key)
        if row is None:
            return None
        for name in OVERFLOW_FIELDS:
            blob_name = row.pop(name + BLOB_SUFFIX, None)
            if blob_name:
                row[name] = self._blobs.get_text(str(blob_name)) or ""
        return row


_CURSOR = re.compile(r"[0-9]{10}\|[0-9a-f]{64}")


def _encode_cursor(row_key: str, table: str) -> str:
    return encode_page_token({"after": row_key, "list": table})


def _decode_cursor(token: str | None, table: str) -> str | None:
    """Read a merged page's continuation token: the row key the page ended on.

    Raises:
        ValidationError: when the token is not one :func:`_encode_cursor` made for this list.
    """
    if not token:
        return None
    decoded = decode_page_token(token)
    after = decoded.get("after")
    if decoded.get("list") != table or not isinstance(after, str) or not _CURSOR.fullmatch(after):
        raise ValidationError(field="continuationToken", rule=PAGE_RULE)
    return after
