"""What the directory knows: tenants, their users, and the companies that are customers."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BACKFILL_DAYS = 360
"""Days of mail history synced on first connection when the tenant says nothing else."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """A customer-platform tenant: one Microsoft Entra tenant, set up by its admin."""

    tenant_id: str
    name: str
    own_domains: tuple[str, ...]
    backfill_days: int = DEFAULT_BACKFILL_DAYS


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A user of a tenant, keyed by the Entra object id (``oid``), with the product roles."""

    tenant_id: str
    user_id: str
    upn: str
    display_name: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Contact:
    """A known person at a company: a normalised address and a display name (maybe empty)."""

    address: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Company:
    """A customer company with its related domains and known contacts (in address order)."""

    tenant_id: str
    company_id: str
    name: str
    domains: tuple[str, ...]
    external_id: str | None = None
    contacts: tuple[Contact, ...] = ()


@dataclass(frozen=True, slots=True)
class CompanySummary:
    """A company as listed: everything but its contacts, which are only counted."""

    tenant_id: str
    company_id: str
    name: str
    domains: tuple[str, ...]
    external_id: str | None
    contact_count: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """How many companies an import created and how many it updated."""

    created: int
    updated: int
