"""What the directory knows: tenants, their users, and the companies that are customers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared.sending.schedule import DoNotDisturb

PropertyValue = str | int | float | bool | None
"""What a company's custom property may hold."""

DEFAULT_BACKFILL_DAYS = 360
"""Days of mail history synced on first connection when the tenant says nothing else."""
DEFAULT_SEND_SIZE_LIMIT = 2 * 1024 * 1024
"""Raw bytes (body and attachments) an email sent through the product may hold by default."""
MAX_SEND_SIZE_LIMIT = 8 * 1024 * 1024
DEFAULT_DAILY_AUTOMATIC_LIMIT = 200
"""Automatic emails one user may send per local day by default."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """A customer-platform tenant: one Microsoft Entra tenant, set up by its admin."""

    tenant_id: str
    name: str
    own_domains: tuple[str, ...]
    backfill_days: int = DEFAULT_BACKFILL_DAYS
    send_size_limit: int = DEFAULT_SEND_SIZE_LIMIT
    daily_automatic_limit: int = DEFAULT_DAILY_AUTOMATIC_LIMIT
    do_not_disturb: DoNotDisturb | None = None


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
    """A known person at a company: a normalised address, a display name and a time zone.

    The name and the zone may be empty; a zone is an IANA name such as ``Europe/Paris``, used
    for do-not-disturb hours kept in the recipient's time.
    """

    address: str
    name: str = ""
    time_zone: str = ""


@dataclass(frozen=True, slots=True)
class Company:
    """A customer company with its related domains and known contacts (in address order).

    ``owner_ids`` are the user ids (Entra ``oid``) of the users who own the company, which is
    what an "owned companies only" portfolio looks at; ``properties`` are the tenant's own
    fields of the company (such as ``arr``), plain JSON values by name.
    """

    tenant_id: str
    company_id: str
    name: str
    domains: tuple[str, ...]
    external_id: str | None = None
    contacts: tuple[Contact, ...] = ()
    owner_ids: tuple[str, ...] = ()
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompanySummary:
    """A company as listed: everything but its contacts, which are only counted."""

    tenant_id: str
    company_id: str
    name: str
    domains: tuple[str, ...]
    external_id: str | None
    contact_count: int
    owner_ids: tuple[str, ...] = ()
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """How many companies an import created and how many it updated."""

    created: int
    updated: int
