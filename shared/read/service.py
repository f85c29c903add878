"""The read API: a company's stored emails, and one email, for users of the company's tenant.

Known limitations: every registered user (and admin) of the tenant may read every company's
emails; portfolio, object and property permissions are not applied yet.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.errors import NotFoundError

if TYPE_CHECKING:
    from shared.access.auth import Caller
    from shared.adapters.tables import Entity
    from shared.directory.service import DirectoryService
    from shared.sync.store import EmailStore


class ReadService:
    """Reads stored correspondence for API callers."""

    def __init__(self, directory: DirectoryService, emails: EmailStore) -> None:
        self._directory = directory
        self._emails = emails

    def company_emails(
        self, caller: Caller, company_id: str, *, size: int, token: str | None
    ) -> dict[str, Any]:
        """Return one page of a company's emails, newest first.

        Raises:
            NotFoundError: when the company does not exist in the caller's tenant.
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        self._directory.require_member(caller)
        company = self._directory.get_company(caller.tenant_id, company_id)
        rows, next_token = self._emails.company_page(
            caller.tenant_id, company.company_id, size=size, token=token
        )
        return {"items": [_summary(row) for row in rows], "continuationToken": next_token}

    def email(self, caller: Caller, email_id: str) -> dict[str, Any]:
        """Return one stored email with its body.

        Raises:
            NotFoundError: when no such email exists in the caller's tenant.
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        self._directory.require_member(caller)
        row = self._emails.get_email(caller.tenant_id, email_id)
        if row is None:
            msg = f"email {email_id} not found"
            raise NotFoundError(msg)
        return {
            "id": row["RowKey"],
            "internetMessageId": row.get("internetMessageId", ""),
            "conversationId": row.get("conversationId", ""),
            "subject": row.get("subject", ""),
            "from": json.loads(row.get("from") or "{}"),
            "recipients": json.loads(row.get("recipients") or "{}"),
            "sentDateTime": row.get("sentDateTime", ""),
            "receivedDateTime": row.get("receivedDateTime", ""),
            "hasAttachments": bool(row.get("hasAttachments")),
            "body": {"contentType": row.get("bodyType", "text"), "content": row.get("body", "")},
            "companyIds": json.loads(row.get("companyIds") or "[]"),
        }


def _summary(row: Entity) -> dict[str, Any]:
    return {
        "id": row["emailKey"],
        "internetMessageId": row.get("internetMessageId", ""),
        "subject": row.get("subject", ""),
        "from": json.loads(row.get("from") or "{}"),
        "bodyPreview": row.get("bodyPreview", ""),
        "sentDateTime": row.get("sentDateTime", ""),
        "receivedDateTime": row.get("receivedDateTime", ""),
        "hasAttachments": bool(row.get("hasAttachments")),
    }
