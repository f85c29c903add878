"""Permissions: what a caller may connect, which companies and fields they see, what they may do.

Three layers apply to every read, on top of the tenant boundary:

- **portfolio**: all companies of the tenant, or only those whose ``ownerIds`` hold the caller;
- **object and property**: per object type, which fields a response keeps (hidden fields are
  removed by :meth:`AccessView.mask`, never sent blank);
- **workflow**: the shared inbox, power tools on other users, automatic emails, settings.

Feature access (which roles may connect mail or calendar) is checked before consent starts.

A caller's roles are the app roles of their token (``roles`` claim) together with the product
roles an admin gave them (``PUT admin/users/{oid}``). Each role listed in the tenant's policy
contributes what it allows, and the caller gets the union (the most any of their roles allows);
a caller none of whose roles is listed gets the policy's ``default`` entry. Callers holding the
``Admin`` app role may always do everything and see every field. Callers who are neither admins
nor registered users of the tenant are refused (403) before any of this.

The policy is one entity per tenant in the ``permissions`` table, holding the whole document as
JSON, so a change is written in one step and never half-applied.

A non-admin granted ``manageSettings`` may change the policy, but not to raise anyone, themselves
included: the entries that decide what they may do stay as they are, and an entry they change may
allow no feature, workflow, portfolio or field that they are not allowed themselves. Admins may
change anything.

Known limitations: the policy is read on every request (one point read), and concurrent writes
of the policy keep the last one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.access.policy import (
    ALIASES,
    ALWAYS_VISIBLE,
    IMPLIED,
    OBJECT_FIELDS,
    OPEN_FIELDS,
    Feature,
    ObjectType,
    Portfolio,
    RolePolicy,
    TenantPolicy,
    Workflow,
    parse_policy,
)
from shared.adapters.tablelimits import string_fits, table_key
from shared.errors import ForbiddenError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from shared.access.auth import Caller
    from shared.adapters.tables import TableEntityStore
    from shared.directory.service import DirectoryService

__all__ = [
    "AccessView",
    "Feature",
    "ObjectType",
    "PermissionService",
    "Portfolio",
    "Workflow",
]

logger = logging.getLogger(__name__)

PERMISSIONS = "permissions"
POLICY_ROW = "policy"


class Owned(Protocol):
    """Anything with owners, such as a company or a company summary."""

    @property
    def owner_ids(self) -> tuple[str, ...]:
        """The user ids of the owners."""
        ...


@dataclass(frozen=True, slots=True)
class AccessView:
    """What one caller may do and see, resolved once per request."""

    user_id: str
    is_admin: bool
    entries: tuple[RolePolicy, ...]

    @property
    def portfolio(self) -> Portfolio:
        """Return the caller's portfolio: all companies when any of their roles sees all."""
        if self.is_admin or any(e.portfolio is Portfolio.ALL for e in self.entries):
            return Portfolio.ALL
        return Portfolio.OWNED

    def allows_feature(self, feature: Feature) -> bool:
        """Tell whether the caller may connect ``feature``."""
        return self.is_admin or any(feature in e.features for e in self.entries)

    def allows_workflow(self, workflow: Workflow) -> bool:
        """Tell whether the caller may use ``workflow``."""
        return self.is_admin or any(workflow in e.workflows for e in self.entries)

    def visible_company(self, company: Owned) -> bool:
        """Tell whether a company is in the caller's portfolio."""
        return self.portfolio is Portfolio.ALL or self.user_id in company.owner_ids

    def shows(self, object_type: ObjectType, path: str) -> bool:
        """Tell whether the caller sees the field at ``path`` of an object, whole."""
        if self.is_admin or path in ALWAYS_VISIBLE:
            return True
        implied = IMPLIED.get(object_type, {}).get(path)
        if implied is not None and not self.shows(object_type, implied):
            return False
        return any(e.rule(object_type).shows(path) for e in self.entries)

    def mask(self, object_type: ObjectType, document: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of a response object without the fields the caller may not see."""
        if self.is_admin:
            return dict(document)
        kept: dict[str, Any] = {}
        aliases = ALIASES.get(object_type, {})
        for name, value in document.items():
            if self.shows(object_type, aliases.get(name, name)):
                kept[name] = value
            elif name in OPEN_FIELDS.get(object_type, ()) and isinstance(value, dict):
                inner = {k: v for k, v in value.items() if self.shows(object_type, f"{name}.{k}")}
                if inner:
                    kept[name] = inner
        return kept


class PermissionService:
    """Reads and writes tenants' permission policies and checks callers against them."""

    def __init__(self, tables: TableEntityStore, directory: DirectoryService) -> None:
        self._tables = tables
        self._directory = directory

    def get_policy(self, tenant_id: str) -> TenantPolicy:
        """Return a tenant's policy; the built-in defaults when it configured none."""
        entity = self._tables.get(PERMISSIONS, table_key(tenant_id), POLICY_ROW)
        if entity is None:
            return TenantPolicy()
        stored = parse_policy(json.loads(str(entity["policy"])))
        return TenantPolicy(
            default=stored.default,
            roles=stored.roles,
            updated_at=entity.get("updatedAt"),
            updated_by=entity.get("updatedBy"),
        )

    def policy_for(self, caller: Caller) -> TenantPolicy:
        """Return the caller's tenant policy, for an admin or a manager of settings.

        Raises:
            ForbiddenError: when the caller may not manage settings.
        """
        self.require_workflow(caller, Workflow.MANAGE_SETTINGS)
        return self.get_policy(caller.tenant_id)

    def set_policy(self, caller: Caller, body: object) -> TenantPolicy:
        """Replace the caller's tenant policy with a checked document.

        Raises:
            ForbiddenError: when the caller may not manage settings.
            ValidationError: naming the field of the document that breaks a rule.
        """
        view = self.view_for(caller)
        if not view.allows_workflow(Workflow.MANAGE_SETTINGS):
            message = f"your roles do not allow the {Workflow.MANAGE_SETTINGS} workflow"
            raise ForbiddenError(message)
        if self._directory.get_tenant(caller.tenant_id) is None:
            message = f"tenant {caller.tenant_id} is not set up; PUT admin/tenant first"
            raise NotFoundError(message)
        policy = parse_policy(body)
        if not view.is_admin:
            self._refuse_raise(caller, view, policy)
        document = json.dumps(
            {"default": policy.default.as_json(), "roles": policy.as_json()["roles"]}
        )
        if not string_fits(document):
            field, rule = "body", "is too large; use fewer roles or shorter field lists"
            raise ValidationError(field, rule)

        entity = {
            "PartitionKey": table_key(caller.tenant_id),
            "RowKey": POLICY_ROW,
            "policy": document,
            "updatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "updatedBy": caller.user_id,
        }
        self._tables.upsert(PERMISSIONS, entity, replace=True)
        extra = {"tenant_id": caller.tenant_id, "roles": len(policy.roles)}
        logger.info("permission policy saved", extra=extra)
        return self.get_policy(caller.tenant_id)

    def view_for(self, caller: Caller) -> AccessView:
        """Resolve what the caller may do and see.

        Raises:
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        if caller.is_admin:
            return AccessView(caller.user_id, is_admin=True, entries=())
        entries = self.get_policy(caller.tenant_id).entries_for(self._roles_of(caller))
        return AccessView(caller.user_id, is_admin=False, entries=entries)

    def _roles_of(self, caller: Caller) -> Iterable[str]:
        user = self._directory.get_user(caller.tenant_id, caller.user_id)
        if user is None:
            message = "the caller is not a registered user of this tenant"
            raise ForbiddenError(message)
        return caller.roles | set(user.roles)

    def _refuse_raise(self, caller: Caller, view: AccessView, policy: TenantPolicy) -> None:
        """Refuse a non-admin's policy that changes their own entries or allows more than they.

        Raises:
            ForbiddenError: naming the entry at fault.
        """
        old = self.get_policy(caller.tenant_id)
        roles = set(self._roles_of(caller))
        if old.entries_for(roles) != policy.entries_for(roles):
            message = "only an admin may change the entries that decide what your own roles allow"
            raise ForbiddenError(message)
        changed = [("default", policy.default, old.default)] + [
            (f"roles.{name}", entry, old.roles.get(name)) for name, entry in policy.roles.items()
        ]
        for where, entry, before in changed:
            if entry != before and not _within(entry, view, before):
                message = f"{where} would allow more than your own roles do; only an admin may"
                raise ForbiddenError(message)

    def effective(self, caller: Caller) -> dict[str, Any]:
        """Return what the caller may do and see, for clients to shape their screens.

        Raises:
            ForbiddenError: when the caller is neither an admin nor a registered user.
        """
        view = self.view_for(caller)
        fields = {
            str(kind): sorted(name for name in OBJECT_FIELDS[kind] if view.shows(kind, name))
            for kind in ObjectType
        }
        return {
            "isAdmin": view.is_admin,
            "portfolio": str(view.portfolio),
            "features": sorted(str(f) for f in Feature if view.allows_feature(f)),
            "workflows": sorted(str(w) for w in Workflow if view.allows_workflow(w)),
            "visibleFields": fields,
        }

    def require_workflow(self, caller: Caller, workflow: Workflow) -> None:
        """Raise unless the caller may use a workflow.

        Raises:
            ForbiddenError: when the caller is not a user of the tenant or none of their roles
                allows the workflow.
        """
        if not self.view_for(caller).allows_workflow(workflow):
            message = f"your roles do not allow the {workflow} workflow"
            raise ForbiddenError(message)

    def require_feature(self, caller: Caller, feature: str) -> None:
        """Raise unless the caller may connect a feature (``mail`` or ``calendar``).

        Raises:
            ForbiddenError: when the caller is not a user of the tenant or none of their roles
                may connect the feature.
        """
        if not self.view_for(caller).allows_feature(Feature(feature)):
            message = f"your roles may not connect {feature}"
            raise ForbiddenError(message)


def _within(entry: RolePolicy, view: AccessView, before: RolePolicy | None) -> bool:
    """Tell whether an entry allows only what the viewer or the entry it replaces allowed."""
    was = AccessView(view.user_id, is_admin=False, entries=(before,) if before else ())
    if entry.portfolio is Portfolio.ALL and Portfolio.ALL not in (view.portfolio, _portfolio(was)):
        return False
    if not all(view.allows_feature(f) or was.allows_feature(f) for f in entry.features):
        return False
    if not all(view.allows_workflow(w) or was.allows_workflow(w) for w in entry.workflows):
        return False
    alone = AccessView(view.user_id, is_admin=False, entries=(entry,))
    return all(
        view.shows(kind, path) or (before is not None and was.shows(kind, path))
        for kind in ObjectType
        for path in _paths(kind, entry, view)
        if alone.shows(kind, path)
    )


def _portfolio(view: AccessView) -> Portfolio | None:
    """Return the portfolio of a view over one entry; None over none."""
    return view.portfolio if view.entries else None


def _paths(kind: ObjectType, entry: RolePolicy, view: AccessView) -> set[str]:
    """Every field path worth comparing: the type's fields and any path either side names."""
    paths = set(OBJECT_FIELDS[kind])
    for rule in (entry.rule(kind), *(e.rule(kind) for e in view.entries)):
        paths |= rule.hidden | (rule.visible or frozenset())
    return paths
