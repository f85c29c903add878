"""The JSON shapes of what the read API returns, before a caller's field permissions apply.

Every function here builds the whole object; :meth:`AccessView.mask` then removes what the
caller may not see, so a field is either present with its value or absent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.adapters.tables import Entity
    from shared.directory.model import Company, CompanySummary


def company_json(company: Company) -> dict[str, Any]:
    """Return a company with its contacts."""
    contacts = [
        {"email": c.address, "name": c.name, **({"timeZone": c.time_zone} if c.time_zone else {})}
        for c in company.contacts
    ]
    return {
        "id": company.company_id,
        "name": company.name,
        "domains": list(company.domains),
        "externalId": company.external_id,
        "contacts": contacts,
        "ownerIds": list(company.owner_ids),
        "properties": dict(company.properties),
    }


def company_summary_json(company: CompanySummary) -> dict[str, Any]:
    """Return a company as listed: its contacts only counted."""
    return {
        "id": company.company_id,
        "name": company.name,
        "domains": list(company.domains),
        "externalId": company.external_id,
        "contactCount": company.contact_count,
        "ownerIds": list(company.owner_ids),
        "properties": dict(company.properties),
    }


def email_summary_json(row: Entity) -> dict[str, Any]:
    """Return an index row (company emails, shared inbox) as a list item."""
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


def email_json(row: Entity, holder: Entity | None = None) -> dict[str, Any]:
    """Return a stored email row (its moved fields read back) with its body.

    Bcc recipients, and the companies only they reach, are shown only from ``holder``: the
    caller's own holder row, whose copy (the sender's) carried them.
    """
    mine = holder or {}
    recipients = json.loads(row.get("recipients") or "{}")
    recipients["bcc"] = json.loads(mine.get("bcc") or "[]")
    every = set(json.loads(row.get("companyIds") or "[]"))
    open_text = row.get("openCompanyIds")
    shown = every if open_text is None else set(json.loads(open_text))
    # A company dropped from the email since stays in holder rows; the email row decides.
    companies = (shown | set(json.loads(mine.get("bccCompanyIds") or "[]"))) & every
    return {
        "id": row["RowKey"],
        "internetMessageId": row.get("internetMessageId", ""),
        "conversationId": row.get("conversationId", ""),
        "subject": row.get("subject", ""),
        "from": json.loads(row.get("from") or "{}"),
        "recipients": recipients,
        "sentDateTime": row.get("sentDateTime", ""),
        "receivedDateTime": row.get("receivedDateTime", ""),
        "hasAttachments": bool(row.get("hasAttachments")),
        "body": {"contentType": row.get("bodyType", "text"), "content": row.get("body", "")},
        "companyIds": sorted(companies),
    }
