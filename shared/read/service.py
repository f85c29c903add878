"""The read API: companies, their emails, one email and the shared inbox, as permissions allow.

Every read resolves the caller's :class:`AccessView` once and applies its three layers:

- **portfolio**: a company outside it answers 404, exactly like a company that does not exist
  or one of another tenant, so nobody learns which ids exist. An email is visible when one of
  its companies is in the portfolio, or when the caller's own mailbox holds it.
- **object and property**: each returned object goes through :meth:`AccessView.mask`, so a
  hidden field is absent from the JSON. An email's ``companyIds`` list only companies of the
  caller's portfolio.
- **workflow**: the shared inbox (every synced email of the portfolio, newest first) needs the
  ``sharedInbox`` workflow.

Known limitations: a user's owned companies are read from the owner index, and the shared inbox
and company list of an ``owned`` portfolio merge at most 500 companies; a user owning more sees
the emails of the first 500 (by id) there, while each company's own list stays complete.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.access.permissions import ObjectType, Portfolio, Workflow
from shared.adapters.tables import PAGE_RULE, decode_page_token, encode_page_token
from shared.errors import ForbiddenError, NotFoundError, ValidationError
from shared.read.views import company_json, company_summary_json, email_json, email_summary_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.access.auth import Caller
    from shared.access.permissions import AccessView, PermissionService
    from shared.adapters.tables import Entity
    from shared.directory.model import Company
    from shared.directory.service import DirectoryService
    from shared.sync.store import EmailStore


class ReadService:
    """Reads stored correspondence and companies for API callers, within their permissions."""

    def __init__(
        self, directory: DirectoryService, emails: EmailStore, permissions: PermissionService
    ) -> None:
        self._directory = directory
        self._emails = emails
        self._permissions = permissions

    def company(self, caller: Caller, company_id: str) -> dict[str, Any]:
        """Return one company of the caller's portfolio, with the fields they may see.

        Raises:
            NotFoundError: when the company does not exist in the caller's portfolio.
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        view = self._permissions.view_for(caller)
        company = visible_company(self._directory, caller, view, company_id)
        return view.mask(ObjectType.COMPANY, company_json(company))

    def companies(self, caller: Caller, *, size: int, token: str | None) -> dict[str, Any]:
        """Return one page of the companies of the caller's portfolio.

        Raises:
            ForbiddenError: when the caller is neither an admin nor a registered user.
            ValidationError: when the continuation token is not one this API issued.
        """
        view = self._permissions.view_for(caller)
        if view.portfolio is Portfolio.ALL:
            found, next_token = self._directory.list_companies(
                caller.tenant_id, page_size=size, token=token
            )
        else:
            owned = sorted(self._directory.owned_company_ids(caller.tenant_id, caller.user_id))
            after = _after_id(token)
            chosen = [company_id for company_id in owned if after is None or company_id > after]
            found = self._directory.company_summaries(caller.tenant_id, chosen[:size])
            found = [company for company in found if view.visible_company(company)]
            more = len(chosen) > size
            next_token = _after_token(chosen[size - 1]) if more else None
        items = [view.mask(ObjectType.COMPANY, company_summary_json(c)) for c in found]
        return {"items": items, "continuationToken": next_token}

    def company_emails(
        self, caller: Caller, company_id: str, *, size: int, token: str | None
    ) -> dict[str, Any]:
        """Return one page of a company's emails, newest first.

        Raises:
            NotFoundError: when the company does not exist in the caller's portfolio.
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        view = self._permissions.view_for(caller)
        company = visible_company(self._directory, caller, view, company_id)
        rows, next_token = self._emails.company_page(
            caller.tenant_id, company.company_id, size=size, token=token
        )
        items = [view.mask(ObjectType.EMAIL, email_summary_json(row)) for row in rows]
        return {"items": items, "continuationToken": next_token}

    def shared_inbox(self, caller: Caller, *, size: int, token: str | None) -> dict[str, Any]:
        """Return one page of every synced email of the caller's portfolio, newest first.

        Raises:
            ForbiddenError: when the caller is not a user of the tenant or may not use the
                shared inbox.
            ValidationError: when the continuation token is not one this API issued.
        """
        view = self._permissions.view_for(caller)
        if not view.allows_workflow(Workflow.SHARED_INBOX):
            message = f"your roles do not allow the {Workflow.SHARED_INBOX} workflow"
            raise ForbiddenError(message)
        if view.portfolio is Portfolio.ALL:
            rows, next_token = self._emails.inbox_page(caller.tenant_id, size=size, token=token)
        else:
            owned = self._directory.owned_company_ids(caller.tenant_id, caller.user_id)
            rows, next_token = self._emails.companies_page(
                caller.tenant_id, owned, size=size, token=token
            )
        items = [view.mask(ObjectType.EMAIL, email_summary_json(row)) for row in rows]
        return {"items": items, "continuationToken": next_token}

    def email(self, caller: Caller, email_id: str) -> dict[str, Any]:
        """Return one stored email with its body, with the fields the caller may see.

        Raises:
            NotFoundError: when no such email exists in the caller's tenant, or it is neither
                in the caller's portfolio nor in their own mailbox.
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        view = self._permissions.view_for(caller)
        row = self.readable_email(caller, view, email_id)
        holders = self._emails.holders(caller.tenant_id, str(row["RowKey"]))
        mine = next((h for h in holders if h.get("userId") == caller.user_id), None)
        document = email_json(row, mine)
        if view.portfolio is Portfolio.OWNED:
            owned = set(self._directory.owned_company_ids(caller.tenant_id, caller.user_id))
            document["companyIds"] = [c for c in document["companyIds"] if c in owned]
        return view.mask(ObjectType.EMAIL, document)

    def readable_email(self, caller: Caller, view: AccessView, email_id: str) -> Entity:
        """Return a stored email the caller may read.

        Raises:
            NotFoundError: when there is no such email in the caller's tenant, or it is neither
                in their portfolio nor in their own mailbox; the two answer alike.
        """
        row = self._emails.get_email(caller.tenant_id, email_id)
        if row is None or not may_read(self._directory, caller, view, row, self._emails.holders):
            message = f"email {email_id} not found"
            raise NotFoundError(message)
        return row


def may_read(
    directory: DirectoryService,
    caller: Caller,
    view: AccessView,
    row: Entity,
    holders: Callable[[str, str], list[Entity]],
) -> bool:
    """Tell whether a stored email or event is readable by the caller.

    It is when the caller's portfolio holds all companies, when one of its ``companyIds`` is a
    company the caller owns, or when ``holders`` (the store's, by tenant and key) names the
    caller, whose own mailbox or calendar then holds it.
    """
    if view.portfolio is Portfolio.ALL:
        return True
    companies = set(json.loads(row.get("companyIds") or "[]"))
    if companies & set(directory.owned_company_ids(caller.tenant_id, caller.user_id)):
        return True
    found = holders(caller.tenant_id, str(row["RowKey"]))
    return any(holder.get("userId") == caller.user_id for holder in found)


def visible_company(
    directory: DirectoryService, caller: Caller, view: AccessView, company_id: str
) -> Company:
    """Return a company of the caller's portfolio.

    Raises:
        NotFoundError: when it does not exist in the tenant or lies outside the portfolio; the
            two answer alike.
    """
    company = directory.get_company(caller.tenant_id, company_id)
    if not view.visible_company(company):
        message = f"company {company.company_id} not found in this tenant"
        raise NotFoundError(message)
    return company


def _after_token(company_id: str) -> str:
    return encode_page_token({"afterCompany": company_id})


def _after_id(token: str | None) -> str | None:
    """Read a company list token of an owned portfolio: the id the last page ended on.

    Raises:
        ValidationError: when the token is not one :func:`_after_token` made.
    """
    if not token:
        return None
    after = decode_page_token(token).get("afterCompany")
    if not isinstance(after, str) or not 0 < len(after) <= 64:
        field, rule = "continuationToken", PAGE_RULE
        raise ValidationError(field, rule)
    return after
