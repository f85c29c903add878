"""How the directory is laid out in Table Storage, and the mapping to and from its entities.

Lists (own domains, company domains, roles) are stored as JSON text in one property. Every key
is built with :func:`table_key`, and every entity also carries its own ids as plain properties,
so nothing ever has to be decoded from a key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tablelimits import table_key
from shared.directory._sending import sending_of, sending_properties
from shared.directory.model import (
    DEFAULT_BACKFILL_DAYS,
    Company,
    CompanySummary,
    Contact,
    DirectoryUser,
    PropertyValue,
    Tenant,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from shared.adapters.tables import Entity
    from shared.directory.validation import CompanyDraft, TenantDraft, UserDraft

TENANTS = "tenants"
USERS = "users"
COMPANIES = "companies"
CONTACTS = "companycontacts"
TENANT_PARTITION = "tenant"


def now_iso() -> str:
    """Return the current UTC time as ISO 8601 text, as ``createdAt``/``updatedAt`` hold it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tenant_entity(tenant_id: str, draft: TenantDraft) -> Entity:
    """Build the ``tenants`` entity of a tenant."""
    return {
        "PartitionKey": TENANT_PARTITION,
        "RowKey": table_key(tenant_id),
        "tenantId": tenant_id,
        "name": draft.name,
        "ownDomains": json.dumps(list(draft.own_domains)),
        "backfillDays": draft.backfill_days,
        **sending_properties(draft.sending),
        "updatedAt": now_iso(),
    }


def tenant_of(tenant_id: str, entity: Mapping[str, Any]) -> Tenant:
    """Read a ``tenants`` entity."""
    backfill = entity.get("backfillDays")
    sending = sending_of(entity)
    return Tenant(
        tenant_id=tenant_id,
        name=str(entity.get("name", "")),
        own_domains=json_strings(entity.get("ownDomains")),
        backfill_days=backfill if isinstance(backfill, int) else DEFAULT_BACKFILL_DAYS,
        send_size_limit=sending.send_size_limit,
        daily_automatic_limit=sending.daily_automatic_limit,
        do_not_disturb=sending.do_not_disturb,
    )


def user_entity(tenant_id: str, user_id: str, draft: UserDraft) -> Entity:
    """Build the ``users`` entity of a user."""
    return {
        "PartitionKey": table_key(tenant_id),
        "RowKey": table_key(user_id),
        "userId": user_id,
        "upn": draft.upn,
        "displayName": draft.display_name,
        "roles": json.dumps(list(draft.roles)),
        "updatedAt": now_iso(),
    }


def user_of(tenant_id: str, entity: Mapping[str, Any]) -> DirectoryUser:
    """Read a ``users`` entity."""
    return DirectoryUser(
        tenant_id=tenant_id,
        user_id=str(entity.get("userId") or entity["RowKey"]),
        upn=str(entity.get("upn", "")),
        display_name=str(entity.get("displayName", "")),
        roles=json_strings(entity.get("roles")),
    )


def company_entity(
    tenant_id: str,
    company_id: str,
    draft: CompanyDraft,
    *,
    contact_count: int,
    stored: Mapping[str, Any] | None,
) -> Entity:
    """Build the ``companies`` entity, keeping the properties others added to a stored one."""
    now = now_iso()
    entity: Entity = {key: value for key, value in (stored or {}).items() if key != "Timestamp"}
    entity.update(
        PartitionKey=table_key(tenant_id),
        RowKey=table_key(company_id),
        companyId=company_id,
        name=draft.name,
        domains=json.dumps(list(draft.domains)),
        externalId=draft.external_id,
        contactCount=contact_count,
        createdAt=entity.get("createdAt", now),
        updatedAt=now,
    )
    # Left out of the draft, owners and properties keep their stored values.
    if draft.owner_ids is not None:
        entity["ownerIds"] = json.dumps(list(draft.owner_ids))
    if draft.properties is not None:
        entity["properties"] = json.dumps(draft.properties, ensure_ascii=False)
    return entity


def company_id_of(entity: Mapping[str, Any]) -> str:
    """Return the id of a stored company."""
    return str(entity.get("companyId") or entity["RowKey"])


def summary_of(tenant_id: str, entity: Mapping[str, Any]) -> CompanySummary:
    """Read a ``companies`` entity without its contacts."""
    count = entity.get("contactCount")
    return CompanySummary(
        tenant_id=tenant_id,
        company_id=company_id_of(entity),
        name=str(entity.get("name", "")),
        domains=json_strings(entity.get("domains")),
        external_id=entity.get("externalId") or None,
        contact_count=count if isinstance(count, int) else 0,
        owner_ids=json_strings(entity.get("ownerIds")),
        properties=json_object(entity.get("properties")),
    )


def company_of(tenant_id: str, entity: Mapping[str, Any], contacts: Iterable[Contact]) -> Company:
    """Read a ``companies`` entity together with its contacts, in address order."""
    summary = summary_of(tenant_id, entity)
    return Company(
        tenant_id=tenant_id,
        company_id=summary.company_id,
        name=summary.name,
        domains=summary.domains,
        external_id=summary.external_id,
        contacts=tuple(sorted(contacts, key=lambda contact: contact.address)),
        owner_ids=summary.owner_ids,
        properties=summary.properties,
    )


def contact_entity(tenant_id: str, company_id: str, contact: Contact) -> Entity:
    """Build the ``companycontacts`` entity of one contact of a company."""
    return {
        "PartitionKey": table_key(tenant_id),
        "RowKey": table_key(company_id, contact.address),
        "companyId": company_id,
        "address": contact.address,
        "name": contact.name,
        "timeZone": contact.time_zone,
    }


def contact_of(entity: Mapping[str, Any]) -> Contact:
    """Read a ``companycontacts`` entity."""
    return Contact(
        address=str(entity.get("address", "")),
        name=str(entity.get("name", "")),
        time_zone=str(entity.get("timeZone") or ""),
    )


def contact_key(tenant_id: str, company_id: str, address: str) -> tuple[str, str]:
    """Return the PartitionKey and RowKey of one contact of a company."""
    return table_key(tenant_id), table_key(company_id, address)


def json_strings(value: object) -> tuple[str, ...]:
    """Read a JSON list of strings stored in one property; anything else reads as empty."""
    if not isinstance(value, str):
        return ()
    try:
        items = json.loads(value)
    except json.JSONDecodeError:
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(item for item in items if isinstance(item, str))


def json_object(value: object) -> dict[str, PropertyValue]:
    """Read a JSON object stored in one property; anything else reads as empty."""
    if not isinstance(value, str):
        return {}
    try:
        found = json.loads(value)
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}
