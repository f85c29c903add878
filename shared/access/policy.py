"""A tenant's permission policy: what each role may connect, see and do, and its JSON form.

A policy holds one entry per role plus a ``default`` entry for callers none of whose roles is
listed. Each entry says:

- ``features``: what the role may connect (``mail``, ``calendar``);
- ``portfolio``: ``all`` companies of the tenant, or only those the user ``owned``;
- ``workflows``: ``sharedInbox``, ``powerToolsOnOthers``, ``automaticEmails``, ``manageSettings``;
- ``fields``: per object type (``email``, ``event``, ``company``) either ``{"hidden": [...]}``
  (every field but these) or ``{"visible": [...]}`` (only these). A company's custom
  properties are named ``properties.<name>``; ``properties`` alone means all of them.

A role entry that leaves a key out takes the ``default`` entry's value for it, and a document
that leaves ``default`` out takes :data:`BUILT_IN_DEFAULT`. Every check names the offending
field by its path, such as ``roles.Sales.fields.email.hidden[2]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from shared.errors import ValidationError

ADMIN_ROLE = "Admin"
MAX_ROLES = 50
MAX_ROLE = 64
MAX_FIELDS = 100


class Workflow(StrEnum):
    """A workflow a role may be allowed to use."""

    SHARED_INBOX = "sharedInbox"
    POWER_TOOLS_ON_OTHERS = "powerToolsOnOthers"
    AUTOMATIC_EMAILS = "automaticEmails"
    MANAGE_SETTINGS = "manageSettings"


class Feature(StrEnum):
    """Something a role may connect from its users' Microsoft 365 accounts."""

    MAIL = "mail"
    CALENDAR = "calendar"


class Portfolio(StrEnum):
    """Which companies of the tenant a role sees."""

    ALL = "all"
    OWNED = "owned"


class ObjectType(StrEnum):
    """A kind of object the read API returns, whose fields a policy may hide."""

    EMAIL = "email"
    EVENT = "event"
    COMPANY = "company"


ALWAYS_VISIBLE = frozenset({"id"})
"""Fields no policy hides: an object without its id could not be asked for again."""

OBJECT_FIELDS: Mapping[ObjectType, frozenset[str]] = {
    ObjectType.EMAIL: frozenset(
        {
            "internetMessageId",
            "conversationId",
            "subject",
            "bodyPreview",
            "body",
            "from",
            "recipients",
            "sentDateTime",
            "receivedDateTime",
            "hasAttachments",
            "companyIds",
        }
    ),
    ObjectType.EVENT: frozenset(
        {
            "iCalUId",
            "subject",
            "bodyPreview",
            "body",
            "organizer",
            "attendees",
            "start",
            "end",
            "isAllDay",
            "isCancelled",
            "location",
            "showAs",
            "type",
            "seriesMasterId",
            "companyIds",
        }
    ),
    ObjectType.COMPANY: frozenset(
        {"name", "domains", "externalId", "contacts", "contactCount", "ownerIds", "properties"}
    ),
}
"""The fields a policy may name, per object type."""

OPEN_FIELDS: Mapping[ObjectType, frozenset[str]] = {ObjectType.COMPANY: frozenset({"properties"})}
"""Fields holding an object whose own keys a policy may name, as ``properties.arr``."""

ALIASES: Mapping[ObjectType, Mapping[str, str]] = {
    ObjectType.EVENT: {
        "startDate": "start",
        "endDate": "end",
        "timeZone": "start",
        "upcoming": "end",
        "attendeeCount": "attendees",
    },
}
"""Response fields that carry another field's information, and so are shown or hidden with it:
an all-day event's ``startDate`` is its ``start``, the attendee count tells of the attendees."""

IMPLIED: Mapping[ObjectType, Mapping[str, str]] = {
    ObjectType.EMAIL: {"bodyPreview": "body"},
    ObjectType.EVENT: {"bodyPreview": "body"},
    ObjectType.COMPANY: {"contactCount": "contacts"},
}
"""A field shown only when another is shown too: a preview is the body's first characters, and
the contact count tells of the contacts."""

PROPERTY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
"""The rule for a company's custom property names, shared with the directory."""

_Choice = TypeVar("_Choice", bound=StrEnum)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ENTRY_KEYS = frozenset({"features", "portfolio", "workflows", "fields"})
_DOCUMENT_KEYS = frozenset({"default", "roles", "updatedAt", "updatedBy"})


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Which fields of one object type a role sees: only ``visible`` if set, else all but hidden."""

    hidden: frozenset[str] = frozenset()
    visible: frozenset[str] | None = None

    def shows(self, path: str) -> bool:
        """Tell whether the field at ``path`` (``subject``, ``properties.arr``) is shown whole."""
        parent = path.split(".", 1)[0]
        if self.visible is not None:
            return path in self.visible or parent in self.visible
        nested = any(name.startswith(path + ".") for name in self.hidden)
        return path not in self.hidden and parent not in self.hidden and not nested

    def as_json(self) -> dict[str, list[str]]:
        """Return the rule as the policy document writes it."""
        if self.visible is not None:
            return {"visible": sorted(self.visible)}
        return {"hidden": sorted(self.hidden)}


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """What one role (or the default entry) may connect, see and do."""

    features: frozenset[Feature]
    portfolio: Portfolio
    workflows: frozenset[Workflow]
    fields: Mapping[ObjectType, FieldRule] = field(default_factory=dict)

    def rule(self, object_type: ObjectType) -> FieldRule:
        """Return the field rule of an object type; nothing hidden when none is set."""
        return self.fields.get(object_type) or FieldRule()

    def as_json(self) -> dict[str, Any]:
        """Return the entry as the policy document writes it, every key spelled out."""
        return {
            "features": sorted(self.features),
            "portfolio": str(self.portfolio),
            "workflows": sorted(self.workflows),
            "fields": {str(kind): self.rule(kind).as_json() for kind in ObjectType},
        }


BUILT_IN_DEFAULT = RolePolicy(
    features=frozenset(Feature),
    portfolio=Portfolio.ALL,
    workflows=frozenset({Workflow.SHARED_INBOX, Workflow.AUTOMATIC_EMAILS}),
    fields={kind: FieldRule() for kind in ObjectType},
)
"""What a user may do in a tenant that configured nothing: connect both, see every company and
every field, use the shared inbox and automatic emails; power tools on other users and settings
stay with admins."""


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """A tenant's whole permission policy."""

    default: RolePolicy = BUILT_IN_DEFAULT
    roles: Mapping[str, RolePolicy] = field(default_factory=dict)
    updated_at: str | None = None
    updated_by: str | None = None

    def entries_for(self, roles: Iterable[str]) -> tuple[RolePolicy, ...]:
        """Return the entries of the listed roles among ``roles``; the default when none is."""
        found = tuple(self.roles[role] for role in sorted(set(roles)) if role in self.roles)
        return found or (self.default,)

    def as_json(self) -> dict[str, Any]:
        """Return the policy document as ``GET admin/permissions`` answers it."""
        return {
            "default": self.default.as_json(),
            "roles": {name: entry.as_json() for name, entry in sorted(self.roles.items())},
            "updatedAt": self.updated_at,
            "updatedBy": self.updated_by,
        }


def parse_policy(body: object) -> TenantPolicy:
    """Check a policy document and build the policy it describes.

    Raises:
        ValidationError: naming the first field that breaks a rule.
    """
    fields = _object(body, "body", _DOCUMENT_KEYS)
    default = BUILT_IN_DEFAULT
    if fields.get("default") is not None:
        default = _entry(fields["default"], "default", BUILT_IN_DEFAULT)

    raw_roles = fields.get("roles")
    if raw_roles is None:
        raw_roles = {}
    if not isinstance(raw_roles, Mapping):
        field_name = "roles"
        raise ValidationError(field_name, "must be an object mapping role names to entries")
    if len(raw_roles) > MAX_ROLES:
        field_name = "roles"
        raise ValidationError(field_name, f"holds at most {MAX_ROLES} roles")
    roles = {}
    for name, entry in raw_roles.items():
        path = f"roles.{name}"
        roles[_role_name(name, path)] = _entry(entry, path, default)
    return TenantPolicy(default=default, roles=roles)


def _role_name(name: str, path: str) -> str:
    text = name.strip()
    if not 0 < len(text) <= MAX_ROLE or _CONTROL.search(text) or text != name:
        rule = f"must be a role name of 1 to {MAX_ROLE} characters without surrounding spaces"
        raise ValidationError(path, rule)
    if text == ADMIN_ROLE:
        raise ValidationError(path, f"cannot be set: the {ADMIN_ROLE} role may always do all")
    return text


def _entry(value: object, path: str, base: RolePolicy) -> RolePolicy:
    fields = _object(value, path, _ENTRY_KEYS)
    features = base.features
    if "features" in fields:
        features = frozenset(_choices(fields["features"], f"{path}.features", Feature))
    workflows = base.workflows
    if "workflows" in fields:
        workflows = frozenset(_choices(fields["workflows"], f"{path}.workflows", Workflow))
    portfolio = base.portfolio
    if "portfolio" in fields:
        portfolio = _choice(fields["portfolio"], f"{path}.portfolio", Portfolio)
    rules = {kind: base.rule(kind) for kind in ObjectType}
    if "fields" in fields:
        rules.update(_rules(fields["fields"], f"{path}.fields"))
    return RolePolicy(features, portfolio, workflows, rules)


def _rules(value: object, path: str) -> dict[ObjectType, FieldRule]:
    fields = _object(value, path, frozenset(ObjectType))
    return {
        ObjectType(kind): _rule(ObjectType(kind), raw, f"{path}.{kind}")
        for kind, raw in fields.items()
    }


def _rule(kind: ObjectType, value: object, path: str) -> FieldRule:
    fields = _object(value, path, frozenset({"hidden", "visible"}))
    if len(fields) != 1:
        raise ValidationError(path, "must hold exactly one of hidden or visible")
    mode, names = next(iter(fields.items()))
    checked = frozenset(_field_names(kind, names, f"{path}.{mode}"))
    return FieldRule(visible=checked) if mode == "visible" else FieldRule(hidden=checked)


def _field_names(kind: ObjectType, value: object, path: str) -> list[str]:
    items = _list(value, path, MAX_FIELDS)
    known = OBJECT_FIELDS[kind]
    for index, name in enumerate(items):
        if not isinstance(name, str) or not _known_field(kind, name):
            expected = ", ".join(sorted(known))
            rule = f"must be a field of {kind}: {expected}"
            if kind in OPEN_FIELDS:
                rule += ", or properties.<name>"
            at = f"{path}[{index}]"
            raise ValidationError(at, rule)
    return [str(name) for name in items]


def _known_field(kind: ObjectType, name: str) -> bool:
    if name in OBJECT_FIELDS[kind]:
        return True
    parent, _, child = name.partition(".")
    return parent in OPEN_FIELDS.get(kind, ()) and PROPERTY_NAME.fullmatch(child) is not None


def _choices(value: object, path: str, kind: type[_Choice]) -> list[_Choice]:
    items = _list(value, path, len(kind))
    return [_choice(item, f"{path}[{index}]", kind) for index, item in enumerate(items)]


def _choice(value: object, path: str, kind: type[_Choice]) -> _Choice:
    allowed = [str(member) for member in kind]
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(path, f"must be one of {', '.join(allowed)}")
    return kind(value)


def _list(value: object, path: str, max_items: int) -> list[object]:
    if not isinstance(value, list):
        raise ValidationError(path, "must be a list")
    if len(value) > max_items:
        raise ValidationError(path, f"holds at most {max_items} entries")
    return value


def _object(value: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(path, "must be a JSON object")
    for key in value:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            name = key if path == "body" else f"{path}.{key}"
            raise ValidationError(name, f"is not a known field; expected {expected}")
    return value
