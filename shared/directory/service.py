"""The directory: tenants, their users and roles, and customer companies with their contacts.

A tenant is set up by its admin first; users and companies of a tenant that is not set up are
refused. Every admin operation checks all of its input before it writes anything, so bad input
never leaves a partial change behind.

Known limitations: a company and its contacts live in two tables, which Table Storage cannot
change in one transaction. Writes go in an order that keeps a crash harmless and repeating the
request completes them, but for a moment an updated company's new contacts can be visible
before its other changes, and an update refused because the company changed meanwhile (409)
can leave the contacts it added until the next update of that company. A storage failure
halfway through a large import leaves the rows before it written until the import is
repeated. Imports write without ETags, so an admin editing a company while an import of the
same company runs may lose one of the two changes. ``externalId`` is checked for uniqueness by
a read before the write, so two concurrent requests can still give two companies the same id.
Listing one company's contacts filters the tenant's contact partition by company id. Admin
actions are logged but not yet written to an audit table.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.directory import _entities as ent
from shared.directory._companystore import CompanyStore
from shared.directory._importplan import plan_import
from shared.directory.model import ImportResult
from shared.directory.validation import (
    company_draft,
    company_drafts,
    guid,
    refuse_own_domains,
    tenant_draft,
    user_draft,
)
from shared.errors import ForbiddenError, NotFoundError, ValidationError
from shared.matching.companies import CompanyMatchData

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from shared.access.auth import Caller
    from shared.adapters.tables import TableEntityStore
    from shared.directory.model import Company, CompanySummary, DirectoryUser, Tenant
    from shared.directory.validation import CompanyDraft

__all__ = ["DirectoryService"]

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1_000
ZONE_LOOKUPS = 10
"""Recipients looked up for a contact time zone, in order: to, then cc."""


class DirectoryService:
    """Reads and maintains the directory of every tenant in Table Storage."""

    def __init__(
        self,
        tables: TableEntityStore,
        *,
        forget_company: Callable[[str, str], object] | None = None,
    ) -> None:
        """Build the service.

        Args:
            tables: the table store.
            forget_company: called with (tenant id, company id) after a company is deleted, so
                what other parts of the product filed under it (its email index) goes too.
        """
        self._tables = tables
        self._companies = CompanyStore(tables)
        self._forget_company = forget_company

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """Return a tenant's settings, or ``None`` when it is not set up."""
        entity = self._tables.get(ent.TENANTS, ent.TENANT_PARTITION, table_key(tenant_id))
        return None if entity is None else ent.tenant_of(tenant_id, entity)

    def upsert_tenant(self, tenant_id: str, body: Mapping[str, Any]) -> Tenant:
        """Set up a tenant or replace its settings; settings left out take their defaults.

        Raises:
            ValidationError: naming the field of the body that breaks a rule.
        """
        draft = tenant_draft(body)

        # Merge, not replace: other features keep their own tenant settings on this entity.
        entity = ent.tenant_entity(tenant_id, draft)
        self._tables.upsert(ent.TENANTS, entity)
        logger.info("tenant saved", extra={"tenant_id": tenant_id})
        return ent.tenant_of(tenant_id, entity)

    def get_user(self, tenant_id: str, user_id: str) -> DirectoryUser | None:
        """Return a user of a tenant by Entra object id, or ``None`` when unknown."""
        key = table_key(user_id.strip().lower())
        entity = self._tables.get(ent.USERS, table_key(tenant_id), key)
        return None if entity is None else ent.user_of(tenant_id, entity)

    def upsert_user(self, tenant_id: str, user_id: str, body: Mapping[str, Any]) -> DirectoryUser:
        """Add a user to a tenant or replace the user's profile and roles.

        Raises:
            ValidationError: when the user id is not a GUID or a field breaks a rule.
            NotFoundError: when the tenant is not set up.
        """
        user_id = guid(user_id, "user_id")
        draft = user_draft(body)
        self._require_tenant(tenant_id)

        entity = ent.user_entity(tenant_id, user_id, draft)
        self._tables.upsert(ent.USERS, entity)
        logger.info("user saved", extra={"tenant_id": tenant_id, "user_id": user_id})
        return ent.user_of(tenant_id, entity)

    def list_users(self, tenant_id: str) -> list[DirectoryUser]:
        """Return every user of a tenant.

        Raises:
            NotFoundError: when the tenant is not set up.
        """
        self._require_tenant(tenant_id)
        found = self._tables.list_partition(ent.USERS, table_key(tenant_id))
        return [ent.user_of(tenant_id, entity) for entity in found]

    def get_company(self, tenant_id: str, company_id: str) -> Company:
        """Return a company of a tenant with its contacts.

        Raises:
            NotFoundError: when the tenant has no such company.
        """
        company_id = company_id.strip().lower()
        entity = self._companies.get(tenant_id, company_id)
        if entity is None:
            message = f"company {company_id} not found in this tenant"
            raise NotFoundError(message)
        contacts = self._companies.contacts_of(tenant_id, company_id)
        return ent.company_of(tenant_id, entity, contacts)

    def list_companies(
        self, tenant_id: str, *, page_size: int = 100, token: str | None = None
    ) -> tuple[list[CompanySummary], str | None]:
        """Return one page of a tenant's companies and the token of the next page, if any.

        Raises:
            ValidationError: when the page size is out of range or the token is not ours.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            field, rule = "pageSize", f"must be a whole number from 1 to {MAX_PAGE_SIZE}"
            raise ValidationError(field, rule)
        where, parameters = "PartitionKey eq @pk", {"pk": table_key(tenant_id)}
        found, next_token = self._tables.page(
            ent.COMPANIES, where, parameters, size=page_size, token=token
        )
        return [ent.summary_of(tenant_id, entity) for entity in found], next_token

    def company_summaries(self, tenant_id: str, company_ids: Sequence[str]) -> list[CompanySummary]:
        """Return the listed companies that exist, in the order given, without contacts."""
        found = (self._companies.get(tenant_id, company_id) for company_id in company_ids)
        return [ent.summary_of(tenant_id, entity) for entity in found if entity is not None]

    def owned_company_ids(self, tenant_id: str, user_id: str) -> list[str]:
        """Return the ids of the companies a user of a tenant owns, checked company by company.

        The owner index only names candidates: each is confirmed against the company's own
        ``ownerIds``, and an index row the company no longer backs (a write that lost a race
        after indexing its owners) is removed on the way.
        """
        owned = []
        for company_id in self._companies.owned_company_ids(tenant_id, user_id):
            entity = self._companies.get(tenant_id, company_id)
            if entity is not None and user_id in ent.json_strings(entity.get("ownerIds")):
                owned.append(company_id)
            else:
                self._companies.unindex_owner(tenant_id, company_id, user_id)
        return owned

    def contact_time_zone(self, tenant_id: str, addresses: Sequence[str]) -> str | None:
        """Return the time zone of the first address that is a contact with one, else None.

        Only the first :data:`ZONE_LOOKUPS` addresses are looked up.
        """
        for address in addresses[:ZONE_LOOKUPS]:
            zone = self._companies.contact_time_zone(tenant_id, address)
            if zone:
                return zone
        return None

    def company_match_data(self, tenant_id: str) -> list[CompanyMatchData]:
        """Return every company of a tenant with its related domains and contact addresses."""
        partition = table_key(tenant_id)
        addresses: defaultdict[str, list[str]] = defaultdict(list)
        for contact in self._tables.list_partition(ent.CONTACTS, partition):
            addresses[str(contact.get("companyId"))].append(str(contact.get("address", "")))

        # NOTE: a contact counts only while its company exists; see the write order below.
        companies = self._tables.list_partition(ent.COMPANIES, partition)
        summaries = (ent.summary_of(tenant_id, entity) for entity in companies)
        return [
            CompanyMatchData(s.company_id, s.domains, tuple(addresses.get(s.company_id, ())))
            for s in summaries
        ]

    def create_company(self, tenant_id: str, body: Mapping[str, Any]) -> Company:
        """Add a company with a new id.

        Raises:
            ValidationError: naming the field of the body that breaks a rule.
            NotFoundError: when the tenant is not set up.
            ConflictError: when another company has the same ``externalId``.
        """
        draft = company_draft(body)
        tenant = self._require_tenant(tenant_id)
        refuse_own_domains([draft], tenant.own_domains)
        self._refuse_unknown_owners(tenant_id, [draft])

        company_id = str(uuid.uuid4())
        self._companies.refuse_taken_external_id(tenant_id, company_id, draft.external_id)
        return self._companies.write(tenant_id, company_id, draft, None, [])

    def upsert_company(self, tenant_id: str, company_id: str, body: Mapping[str, Any]) -> Company:
        """Add a company under a chosen id, or replace one; contacts left out stay as they are.

        Raises:
            ValidationError: when the id is not a GUID or a field breaks a rule.
            NotFoundError: when the tenant is not set up.
            ConflictError: when another company has the same ``externalId``, or the company
                changed while this request ran.
        """
        company_id = guid(company_id, "company_id")
        draft = company_draft(body)
        tenant = self._require_tenant(tenant_id)
        refuse_own_domains([draft], tenant.own_domains)
        self._refuse_unknown_owners(tenant_id, [draft])

        self._companies.refuse_taken_external_id(tenant_id, company_id, draft.external_id)
        stored = self._companies.get(tenant_id, company_id)
        # Read contacts even for a new id: an interrupted earlier PUT may have left some.
        old = self._companies.contacts_of(tenant_id, company_id)
        return self._companies.write(tenant_id, company_id, draft, stored, old)

    def delete_company(self, tenant_id: str, company_id: str) -> None:
        """Remove a company and its contacts.

        Unlike other ``delete_`` methods this raises for an unknown company, so the API can
        answer 404; contacts left by an interrupted earlier delete are removed all the same.

        Raises:
            NotFoundError: when the tenant has no such company.
            ConflictError: when the company changed while this request ran.
        """
        company_id = company_id.strip().lower()
        if not self._companies.delete(tenant_id, company_id):
            message = f"company {company_id} not found in this tenant"
            raise NotFoundError(message)
        if self._forget_company is not None:
            self._forget_company(tenant_id, company_id)
        logger.info("company deleted", extra={"tenant_id": tenant_id, "company_id": company_id})

    def import_companies(
        self, tenant_id: str, companies: Sequence[Mapping[str, Any]], *, mode: str = "upsert"
    ) -> ImportResult:
        """Create or update many companies at once, matched by ``externalId`` or exact name.

        Every row is checked and matched before the first write, and re-importing the same
        file updates the companies it created instead of adding them again. ``mode`` is
        ``upsert`` or ``create`` (which refuses the import if any row matches a company).

        Raises:
            ValidationError: naming the row and field, as in ``companies[3].domains[0]``.
            NotFoundError: when the tenant is not set up.
        """
        drafts = company_drafts(companies)
        tenant = self._require_tenant(tenant_id)
        refuse_own_domains(drafts, tenant.own_domains, "companies")
        self._refuse_unknown_owners(tenant_id, drafts, "companies")
        stored = list(self._tables.list_partition(ent.COMPANIES, table_key(tenant_id)))
        planned = plan_import(drafts, stored, mode=mode)

        self._companies.write_import(tenant_id, planned)

        created = sum(1 for row in planned if row.stored is None)
        result = ImportResult(created=created, updated=len(planned) - created)
        extra = {
            "tenant_id": tenant_id,
            "companies_created": result.created,
            "companies_updated": result.updated,
        }
        logger.info("companies imported", extra=extra)
        return result

    def _refuse_unknown_owners(
        self, tenant_id: str, drafts: Sequence[CompanyDraft], path: str = ""
    ) -> None:
        """Refuse owners who are not registered users of the tenant.

        Raises:
            ValidationError: naming the first such owner, as in ``companies[2].ownerIds[0]``.
        """
        if not any(draft.owner_ids for draft in drafts):
            return
        users = self._tables.list_partition(ent.USERS, table_key(tenant_id))
        known = {ent.user_of(tenant_id, entity).user_id for entity in users}
        for index, draft in enumerate(drafts):
            row = f"{path}[{index}]." if path else ""
            for position, owner in enumerate(draft.owner_ids or ()):
                if owner not in known:
                    field = f"{row}ownerIds[{position}]"
                    raise ValidationError(field, "must be the id of a user of this tenant")

    def _require_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.get_tenant(tenant_id)
        if tenant is None:
            message = f"tenant {tenant_id} is not set up; PUT admin/tenant first"
            raise NotFoundError(message)
        return tenant

    def require_member(self, caller: Caller) -> None:
        """Let through tenant admins and users an admin registered; refuse everyone else.

        Raises:
            ForbiddenError: when the caller is neither.
        """
        if caller.is_admin or self.get_user(caller.tenant_id, caller.user_id) is not None:
            return
        message = "the caller is not a registered user of this tenant"
        raise ForbiddenError(message)
