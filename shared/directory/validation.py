"""Check admin input for tenants, users and companies, and turn it into drafts to write.

Every check names the offending field by its path in the request (``domains[2]``,
``contacts[1].email``, ``companies[3].domains[0]``) and the rule it breaks. Unknown fields are
refused, so a typo such as ``domain`` for ``domains`` is reported instead of silently dropped;
the read-only fields that the API returns (``id``, ``contactCount``) are accepted and
ignored, so a document read with GET can be sent back with PUT.

Roles are free-form labels chosen by each tenant (for example ``CSM`` or ``Sales``), because the
tenant admin decides which roles may connect mail and calendar; they are kept as written, without
surrounding spaces, and compared exactly.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import available_timezones

from shared.access.policy import PROPERTY_NAME
from shared.directory._sending import SENDING_FIELDS, SendingDraft, sending_draft
from shared.directory.model import DEFAULT_BACKFILL_DAYS, Contact, PropertyValue
from shared.errors import ValidationError
from shared.matching.addresses import normalize_domain, parse_address

__all__ = [
    "MAX_IMPORT_CONTACTS",
    "MAX_IMPORT_ROWS",
    "CompanyDraft",
    "TenantDraft",
    "UserDraft",
    "company_draft",
    "company_drafts",
    "guid",
    "tenant_draft",
    "user_draft",
]

MAX_NAME = 200
MAX_DISPLAY_NAME = 256
MAX_EXTERNAL_ID = 200
MAX_ADDRESS = 254
MAX_DOMAINS = 100
MAX_CONTACTS = 1_000
MAX_ROLES = 32
MAX_OWNERS = 20
MAX_PROPERTIES = 50
MAX_PROPERTY_CHARS = 500
MAX_ROLE = 64
MAX_BACKFILL_DAYS = 36_500  # about a century: a tenant may sync all history
MAX_IMPORT_ROWS = 5_000
MAX_IMPORT_CONTACTS = 50_000

ADDRESS_RULE = "must be an email address such as name@example.com"
PROPERTY_NAME_RULE = "must be a name of letters, digits and _ starting with a letter, at most 64"
GUID_RULE = "must be a GUID such as 00000000-0000-0000-0000-000000000000"

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# "id" and "contactCount" are read-only: accepted so that a GET document can be PUT back.
_TENANT_FIELDS = frozenset({"name", "ownDomains", "backfillDays", "id", *SENDING_FIELDS})
_USER_FIELDS = frozenset({"upn", "displayName", "roles", "id"})
_COMPANY_FIELDS = frozenset(
    {"name", "domains", "contacts", "externalId", "ownerIds", "properties", "id", "contactCount"}
)
_CONTACT_FIELDS = frozenset({"email", "name", "timeZone"})
ZONE_RULE = "must be an IANA time zone name, such as Europe/Paris"


@dataclass(frozen=True, slots=True)
class TenantDraft:
    """A tenant's settings as the admin sent them, checked and normalised."""

    name: str
    own_domains: tuple[str, ...]
    backfill_days: int
    sending: SendingDraft = field(default_factory=SendingDraft)


@dataclass(frozen=True, slots=True)
class UserDraft:
    """A user's profile as the admin sent it, checked and normalised."""

    upn: str
    display_name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompanyDraft:
    """A company as the admin sent it; a field left out is ``None`` where its value is kept.

    ``contacts``, ``owner_ids`` and ``properties`` left out keep the stored company's values.
    """

    name: str
    domains: tuple[str, ...]
    external_id: str | None
    contacts: tuple[Contact, ...] | None
    owner_ids: tuple[str, ...] | None = None
    properties: dict[str, PropertyValue] | None = None


def guid(value: str, field: str) -> str:
    """Return a GUID in its lower-case canonical form.

    Raises:
        ValidationError: when the value is not a GUID.
    """
    text = value.strip().lower()
    if not _GUID.fullmatch(text):
        raise ValidationError(field, GUID_RULE)
    return text


def tenant_draft(body: object) -> TenantDraft:
    """Check a tenant document: a name, one or more own domains, and optional backfill days.

    Raises:
        ValidationError: naming the first field that breaks a rule.
    """
    fields = _object(body, "", _TENANT_FIELDS)
    name = _text(fields, "name", "", max_chars=MAX_NAME, required=True) or ""
    domains = _list(fields, "ownDomains", "", max_items=MAX_DOMAINS, required=True) or []
    own_domains = _domains(domains, "ownDomains")
    if not own_domains:
        field = "ownDomains"
        raise ValidationError(field, "must list at least one domain")

    backfill = fields.get("backfillDays", DEFAULT_BACKFILL_DAYS)
    is_whole = isinstance(backfill, int) and not isinstance(backfill, bool)
    if not is_whole or not 0 <= backfill <= MAX_BACKFILL_DAYS:
        field, rule = "backfillDays", f"must be a whole number from 0 to {MAX_BACKFILL_DAYS}"
        raise ValidationError(field, rule)
    return TenantDraft(
        name=name, own_domains=own_domains, backfill_days=backfill, sending=sending_draft(fields)
    )


def user_draft(body: object) -> UserDraft:
    """Check a user document: a UPN, an optional display name and optional roles.

    Raises:
        ValidationError: naming the first field that breaks a rule.
    """
    fields = _object(body, "", _USER_FIELDS)
    upn = _text(fields, "upn", "", max_chars=MAX_ADDRESS, required=True) or ""
    address = parse_address(upn)
    if address is None or address.name or "<" in upn:
        field = "upn"
        raise ValidationError(field, ADDRESS_RULE)

    display_name = _text(fields, "displayName", "", max_chars=MAX_DISPLAY_NAME) or ""
    roles = _list(fields, "roles", "", max_items=MAX_ROLES) or []
    return UserDraft(upn=address.address, display_name=display_name, roles=_roles(roles))


def company_draft(body: object, path: str = "") -> CompanyDraft:
    """Check one company document; ``path`` prefixes the field names in errors.

    Raises:
        ValidationError: naming the first field that breaks a rule.
    """
    fields = _object(body, path, _COMPANY_FIELDS)
    name = _text(fields, "name", path, max_chars=MAX_NAME, required=True) or ""
    domains = _list(fields, "domains", path, max_items=MAX_DOMAINS) or []
    external_id = _text(fields, "externalId", path, max_chars=MAX_EXTERNAL_ID)
    contacts = _list(fields, "contacts", path, max_items=MAX_CONTACTS)
    owners = _list(fields, "ownerIds", path, max_items=MAX_OWNERS)
    return CompanyDraft(
        name=name,
        domains=_domains(domains, _at(path, "domains")),
        external_id=external_id,
        contacts=None if contacts is None else _contacts(contacts, _at(path, "contacts")),
        owner_ids=None if owners is None else _owners(owners, _at(path, "ownerIds")),
        properties=_properties(fields.get("properties"), _at(path, "properties")),
    )


def company_drafts(rows: object, path: str = "companies") -> list[CompanyDraft]:
    """Check a whole import: every row, the row limit, and no company twice.

    A row names its company by ``externalId`` when it has one, else by its exact name, so two
    rows naming the same company are refused rather than applied one over the other.

    Raises:
        ValidationError: naming the first offending row and field, as in ``companies[3].name``.
    """
    if not isinstance(rows, list):
        raise ValidationError(path, "must be a list of companies")
    if len(rows) > MAX_IMPORT_ROWS:
        rule = f"holds at most {MAX_IMPORT_ROWS} companies per request; split the file"
        raise ValidationError(path, rule)

    drafts = [company_draft(row, f"{path}[{index}]") for index, row in enumerate(rows)]
    contact_total = sum(len(draft.contacts or ()) for draft in drafts)
    if contact_total > MAX_IMPORT_CONTACTS:
        field = f"{path}[].contacts"
        rule = f"hold at most {MAX_IMPORT_CONTACTS} contacts per request; split the file"
        raise ValidationError(field, rule)
    _refuse_repeats(drafts, path)
    return drafts


def refuse_own_domains(
    drafts: Sequence[CompanyDraft], own_domains: Sequence[str], path: str = ""
) -> None:
    """Refuse related domains at or under the tenant's own domains: those never count.

    Raises:
        ValidationError: naming the first such domain, as in ``companies[2].domains[0]``.
    """
    for index, draft in enumerate(drafts):
        row = f"{path}[{index}]" if path else ""
        for position, domain in enumerate(draft.domains):
            if any(domain == own or domain.endswith("." + own) for own in own_domains):
                field = f"{_at(row, 'domains')}[{position}]"
                raise ValidationError(field, "must not be one of the tenant's own domains")


def _refuse_repeats(drafts: Sequence[CompanyDraft], path: str) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, draft in enumerate(drafts):
        key = ("externalId", draft.external_id) if draft.external_id else ("name", draft.name)
        first = seen.setdefault(key, index)
        if first != index:
            field = f"{path}[{index}].{key[0]}"
            raise ValidationError(field, f"repeats {path}[{first}]")


def _object(body: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError(path or "body", "must be a JSON object")
    for key in body:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise ValidationError(_at(path, str(key)), f"is not a known field; expected {expected}")
    return body


def _text(
    fields: Mapping[str, Any], key: str, path: str, *, max_chars: int, required: bool = False
) -> str | None:
    value = fields.get(key)
    # An optional text may be null or empty, so that a document read with GET can be PUT back.
    if not required and (value is None or value == ""):
        return None
    rule = f"must be text of 1 to {max_chars} characters without control characters"
    if not isinstance(value, str):
        raise ValidationError(_at(path, key), rule)
    text = value.strip()
    if not 0 < len(text) <= max_chars or _CONTROL.search(text):
        raise ValidationError(_at(path, key), rule)
    return text


def _list(
    fields: Mapping[str, Any], key: str, path: str, *, max_items: int, required: bool = False
) -> list[object] | None:
    value = fields.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list):
        raise ValidationError(_at(path, key), "must be a list")
    if len(value) > max_items:
        raise ValidationError(_at(path, key), f"holds at most {max_items} entries")
    return value


def _domains(values: Sequence[object], path: str) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for index, value in enumerate(values):
        field = f"{path}[{index}]"
        if not isinstance(value, str):
            raise ValidationError(field, "must be a domain name such as example.com")
        found.setdefault(normalize_domain(value, field))
    return tuple(found)


def _contacts(values: Sequence[object], path: str) -> tuple[Contact, ...]:
    found: dict[str, Contact] = {}
    for index, value in enumerate(values):
        contact = _contact(value, f"{path}[{index}]")
        found.setdefault(contact.address, contact)
    return tuple(found.values())


def _contact(value: object, path: str) -> Contact:
    if isinstance(value, str):
        return _parsed_contact(value, path, "")
    fields = _object(value, path, _CONTACT_FIELDS)
    email = fields.get("email")
    if not isinstance(email, str):
        field = f"{path}.email"
        raise ValidationError(field, ADDRESS_RULE)
    name = _text(fields, "name", path, max_chars=MAX_DISPLAY_NAME) or ""
    contact = _parsed_contact(email, f"{path}.email", name)
    zone = _time_zone(fields.get("timeZone"), f"{path}.timeZone")
    return Contact(address=contact.address, name=contact.name, time_zone=zone)


def _time_zone(value: object, field: str) -> str:
    """Return an IANA zone name as given; empty when absent or null."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > 64 or value not in _zone_names():
        raise ValidationError(field, ZONE_RULE)
    return value


def _parsed_contact(value: str, field: str, name: str) -> Contact:
    address = parse_address(value)
    if address is None or len(address.address) > MAX_ADDRESS:
        raise ValidationError(field, ADDRESS_RULE)
    display = name or address.name
    if len(display) > MAX_DISPLAY_NAME or _CONTROL.search(display):
        rule = f"must have a display name of at most {MAX_DISPLAY_NAME} characters"
        raise ValidationError(field, rule)
    return Contact(address=address.address, name=display)


def _owners(values: Sequence[object], path: str) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for index, value in enumerate(values):
        field = f"{path}[{index}]"
        found.setdefault(guid(value if isinstance(value, str) else "", field))
    return tuple(found)


def _properties(value: object, path: str) -> dict[str, PropertyValue] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(path, "must be a JSON object of named values")
    if len(value) > MAX_PROPERTIES:
        raise ValidationError(path, f"holds at most {MAX_PROPERTIES} properties")
    checked: dict[str, PropertyValue] = {}
    for name, item in value.items():
        field = f"{path}.{name}"
        if not PROPERTY_NAME.fullmatch(name):
            raise ValidationError(field, PROPERTY_NAME_RULE)
        checked[name] = _property_value(item, field)
    return checked


def _property_value(value: object, field: str) -> PropertyValue:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    rule = f"must be a number, true, false, null or text of at most {MAX_PROPERTY_CHARS} characters"
    if not isinstance(value, str) or len(value) > MAX_PROPERTY_CHARS or _CONTROL.search(value):
        raise ValidationError(field, rule)
    return value


def _roles(values: Sequence[object]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for index, value in enumerate(values):
        text = value.strip() if isinstance(value, str) else ""
        if not 0 < len(text) <= MAX_ROLE or _CONTROL.search(text):
            field = f"roles[{index}]"
            rule = f"must be text of 1 to {MAX_ROLE} characters without control characters"
            raise ValidationError(field, rule)
        found.setdefault(text)
    return tuple(found)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@functools.cache
def _zone_names() -> frozenset[str]:
    # Read once per process: listing the zone database walks its files.
    return frozenset(available_timezones())
