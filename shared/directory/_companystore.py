"""Write companies and their contacts, which live in two tables, in a crash-safe order.

Table Storage has no transaction across tables, so every write follows one order: contact rows
first, then the company row, then removal of the contacts it no longer has; a delete removes
the company row first. A contact row therefore counts only while its company row exists (the
directory's readers join on that), and a crash in between leaves nothing wrong visible;
repeating the same request finishes the job.

Owners are indexed in ``companyowners`` (one partition per tenant and user, one row per company
they own) so that a user's portfolio is one partition read. Owner rows change before the
company row, and readers confirm every row against the company's ``ownerIds`` (removing rows it
does not back), so a crash or a write that loses its race in between never grants access.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import ETAG
from shared.directory import _entities as ent
from shared.errors import ConflictError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from shared.adapters.tables import Entity, TableEntityStore
    from shared.directory._importplan import PlannedRow
    from shared.directory.model import Company, Contact
    from shared.directory.validation import CompanyDraft

logger = logging.getLogger(__name__)

OWNERS = "companyowners"


class CompanyStore:
    """Reads and writes the ``companies`` and ``companycontacts`` tables of the directory."""

    def __init__(self, tables: TableEntityStore) -> None:
        self._tables = tables

    def get(self, tenant_id: str, company_id: str) -> Entity | None:
        """Return a stored company entity, or ``None``."""
        return self._tables.get(ent.COMPANIES, table_key(tenant_id), table_key(company_id))

    def contacts_of(self, tenant_id: str, company_id: str) -> list[Contact]:
        """Return the stored contacts of one company."""
        where = "PartitionKey eq @pk and companyId eq @company"
        parameters = {"pk": table_key(tenant_id), "company": company_id}
        return [ent.contact_of(e) for e in self._tables.query(ent.CONTACTS, where, parameters)]

    def contact_time_zone(self, tenant_id: str, address: str) -> str:
        """Return the time zone recorded for a contact address by any company; "" for none."""
        where = "PartitionKey eq @pk and address eq @address"
        parameters = {"pk": table_key(tenant_id), "address": address}
        for entity in self._tables.query(ent.CONTACTS, where, parameters):
            zone = str(entity.get("timeZone") or "")
            if zone:
                return zone
        return ""

    def refuse_taken_external_id(
        self, tenant_id: str, company_id: str, external_id: str | None
    ) -> None:
        """Raise when a different company of the tenant already has this ``externalId``.

        Raises:
            ConflictError: naming the company that has it.
        """
        if external_id is None:
            return
        where = "PartitionKey eq @pk and externalId eq @ext"
        parameters = {"pk": table_key(tenant_id), "ext": external_id}
        for entity in self._tables.query(ent.COMPANIES, where, parameters):
            owner = ent.company_id_of(entity)
            if owner != company_id:
                message = f"externalId is already used by company {owner}"
                raise ConflictError(message)

    def write(
        self,
        tenant_id: str,
        company_id: str,
        draft: CompanyDraft,
        stored: Entity | None,
        old: Sequence[Contact],
    ) -> Company:
        """Create or replace one company; a draft without contacts keeps the ``old`` ones.

        Raises:
            ConflictError: when the stored company changed since it was read.
        """
        contacts = tuple(old) if draft.contacts is None else draft.contacts
        entity = ent.company_entity(
            tenant_id, company_id, draft, contact_count=len(contacts), stored=stored
        )

        self._put_contacts(tenant_id, company_id, draft.contacts)
        self._set_owners(tenant_id, company_id, _owners(stored), _owners(entity))
        if stored is None:
            self._tables.create(ent.COMPANIES, entity)
        else:
            self._tables.update(ent.COMPANIES, entity, etag=stored[ETAG])
        self._drop_contacts(tenant_id, company_id, old, contacts)

        extra = {"tenant_id": tenant_id, "company_id": company_id, "contacts": len(contacts)}
        logger.info("company saved", extra=extra)
        return ent.company_of(tenant_id, entity, contacts)

    def write_import(self, tenant_id: str, planned: Sequence[PlannedRow]) -> None:
        """Write every planned row, in batches, in the same order as a single company."""
        old_contacts = self._contacts_by_company(tenant_id, planned)
        contact_rows = [
            ent.contact_entity(tenant_id, row.company_id, contact)
            for row in planned
            for contact in row.draft.contacts or ()
        ]
        companies = [_import_entity(tenant_id, row) for row in planned]

        self._tables.upsert_batch(ent.CONTACTS, contact_rows)
        for row, entity in zip(planned, companies, strict=True):
            self._set_owners(tenant_id, row.company_id, _owners(row.stored), _owners(entity))
        self._tables.upsert_batch(ent.COMPANIES, companies)
        for row in planned:
            if row.draft.contacts is not None:
                old = old_contacts.get(row.company_id, [])
                self._drop_contacts(tenant_id, row.company_id, old, row.draft.contacts)

    def delete(self, tenant_id: str, company_id: str) -> bool:
        """Remove a company, then its contacts; tell whether the company row existed.

        Raises:
            ConflictError: when the company changed since it was read.
        """
        stored = self.get(tenant_id, company_id)
        if stored is not None:
            partition, row = table_key(tenant_id), table_key(company_id)
            self._tables.delete(ent.COMPANIES, partition, row, etag=stored[ETAG])
            self._set_owners(tenant_id, company_id, _owners(stored), ())

        # Also when the row is gone: an interrupted earlier delete may have left contacts.
        contacts = self.contacts_of(tenant_id, company_id)
        keys = [ent.contact_key(tenant_id, company_id, c.address) for c in contacts]
        self._tables.delete_batch(ent.CONTACTS, keys)
        return stored is not None

    def owned_company_ids(self, tenant_id: str, user_id: str) -> list[str]:
        """Return the ids of the companies a user owns, from the owner index."""
        rows = self._tables.list_partition(OWNERS, table_key(tenant_id, user_id))
        return [str(row["companyId"]) for row in rows]

    def unindex_owner(self, tenant_id: str, company_id: str, user_id: str) -> None:
        """Remove one owner row the company no longer backs."""
        self._tables.delete(OWNERS, table_key(tenant_id, user_id), table_key(company_id))

    def _set_owners(
        self, tenant_id: str, company_id: str, old: Iterable[str], new: Iterable[str]
    ) -> None:
        """Index a company under its new owners and take it from those it no longer has."""
        kept = set(new)
        for owner in set(old) - kept:
            self._tables.delete(OWNERS, table_key(tenant_id, owner), table_key(company_id))
        for owner in sorted(kept):
            row = {
                "PartitionKey": table_key(tenant_id, owner),
                "RowKey": table_key(company_id),
                "companyId": company_id,
                "userId": owner,
            }
            self._tables.upsert(OWNERS, row)

    def _contacts_by_company(
        self, tenant_id: str, planned: Sequence[PlannedRow]
    ) -> Mapping[str, list[Contact]]:
        """Read, in one query, the stored contacts of the companies whose contacts change."""
        wanted = {
            row.company_id for row in planned if row.stored and row.draft.contacts is not None
        }
        found: defaultdict[str, list[Contact]] = defaultdict(list)
        if not wanted:
            return found
        for entity in self._tables.list_partition(ent.CONTACTS, table_key(tenant_id)):
            if entity.get("companyId") in wanted:
                found[str(entity["companyId"])].append(ent.contact_of(entity))
        return found

    def _put_contacts(
        self, tenant_id: str, company_id: str, contacts: Iterable[Contact] | None
    ) -> None:
        if contacts is not None:
            rows = [ent.contact_entity(tenant_id, company_id, contact) for contact in contacts]
            self._tables.upsert_batch(ent.CONTACTS, rows)

    def _drop_contacts(
        self, tenant_id: str, company_id: str, old: Iterable[Contact], new: Iterable[Contact]
    ) -> None:
        kept = {contact.address for contact in new}
        dropped = [contact.address for contact in old if contact.address not in kept]
        keys = [ent.contact_key(tenant_id, company_id, address) for address in dropped]
        self._tables.delete_batch(ent.CONTACTS, keys)


def _owners(entity: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Return the owner ids a ``companies`` entity holds; none for a missing entity."""
    return ent.json_strings((entity or {}).get("ownerIds"))


def _import_entity(tenant_id: str, row: PlannedRow) -> Entity:
    """Build the entity an import writes; what the row leaves out keeps its stored value."""
    stored = row.stored or {}
    draft = row.draft
    if draft.external_id is None and stored.get("externalId"):
        draft = dataclasses.replace(draft, external_id=str(stored["externalId"]))
    count = stored.get("contactCount", 0) if draft.contacts is None else len(draft.contacts)
    return ent.company_entity(
        tenant_id, row.company_id, draft, contact_count=count, stored=row.stored
    )
